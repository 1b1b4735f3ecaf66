"""promptft: prompt-efficient fine-tuning from the command line and from Python.

`import promptft_cli as pf` stays light: the API (`pf.load_config`, `pf.train`, `pf.evaluate`,
`pf.Predictor`, ... see api.py and docs/python-api.md) is imported on first use, so the CLI's
`--help` never pays for torch.
"""

__version__ = "0.1.0"

_API = ("Config", "PromptftError", "Predictor", "evaluate", "load_config", "train", "train_seeds")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from promptft_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'promptft_cli' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
