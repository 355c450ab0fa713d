"""sft-sweep: experiments on supervised fine-tuning of small GPT models, in numpy."""

__version__ = "0.1.0"

# The sweep directory naming of conf/config.yaml must resolve in every process that runs a job
# (joblib and submitit workers import this package before they resolve it).
from .dirnames import register_resolver as _register_dirname_resolver  # noqa: E402

_register_dirname_resolver()
