from recomatrix.cli import app

app()
