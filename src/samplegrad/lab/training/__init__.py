"""Training: ``samplegrad train vae | bnn | policy`` and what they share."""
