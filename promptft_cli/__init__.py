"""promptft: prompt-efficient fine-tuning from the command line."""

__version__ = "0.1.0"
