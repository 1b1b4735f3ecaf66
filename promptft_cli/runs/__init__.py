"""The run directory: its file layout and atomic writes (layout.py), and what reads a finished run back:
the run table (table.py), the model card (model_card.py) and the plots (plots.py).

`from promptft_cli import runs` gives the layout's names (`runs.CONFIG`, `runs.write_json_atomic`, ...).
"""

from promptft_cli.runs.layout import (  # noqa: F401
    CHECKPOINT,
    CHECKPOINTS,
    CONFIG,
    DATA,
    HISTORY,
    LOG,
    METRICS,
    MULTI_SEED,
    REPORT,
    RUN_INFO,
    SUMMARY,
    RunInfo,
    append_jsonl,
    check_output_dir,
    is_multi_seed,
    is_run_dir,
    read_json,
    require_finished,
    write_bytes_atomic,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
