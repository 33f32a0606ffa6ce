"""counterfeit-detector's command line (`counterfeit`); the libraries are `inference` and `training`."""

__version__ = "0.1.0"
