"""The one error type for bad input data: it names the file (and index/key) and the reason."""


class DataError(ValueError):
    """Bad input data, in one line: ``DataError(f"{path}: {reason}")``."""


def read_json_file(path) -> object:
    """Parse a JSON file; a missing file or invalid JSON is a one-line DataError naming it."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
