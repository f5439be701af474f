"""Channel services: writes of the channels app, one function per business operation."""
