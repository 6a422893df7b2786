"""The rules file on disk: loading and checking it (``load.py``), watching it (``watch.py``)."""
