"""Statistics on numpy and scipy: the reverse-Weibull end-point fit, intervals, and the result objects."""
