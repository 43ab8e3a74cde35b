"""Every figure of the lab. matplotlib is imported inside the functions that plot, so importing
these modules costs nothing until a figure is drawn."""
