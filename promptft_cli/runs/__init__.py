"""The run directory: its file layout and atomic writes (layout.py), and what reads a finished run back:
the run table (table.py), the model card (model_card.py) and the plots (plots.py).

`from promptft_cli import runs` gives the layout's names (`runs.CONFIG`, `runs.write_json_atomic`, ...).
"""

from promptft_cli.runs.layout import (  # noqa: F401
    CONFIG,
    RUN_INFO,
    METRICS,
    HISTORY,
    LOG,
    CHECKPOINT,
    CHECKPOINTS,
    DATA,
    REPORT,
    write_bytes_atomic,
    write_text_atomic,
    write_json_atomic,
    write_jsonl_atomic,
    read_json,
    RunInfo,
    is_run_dir,
    require_finished,
    check_output_dir,
    append_jsonl,
)
