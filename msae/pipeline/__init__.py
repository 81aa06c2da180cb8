"""The pipeline declared once (stages.py), the params file it reads (params.py), the two
orchestrators' files written from it (render.py) and their job lists read back (jobs.py)."""
