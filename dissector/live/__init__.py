"""Live capture: serial taps, the TCP tap relay and passive TCP capture, written and dissected."""
