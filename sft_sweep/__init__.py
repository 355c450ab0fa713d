"""sft-sweep: experiments on supervised fine-tuning of small GPT models, in numpy."""

__version__ = "0.1.0"

