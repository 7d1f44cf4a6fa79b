"""The seed README's router.py: routes, the deployment key, and where the database lives.

Settings come from the environment so the same file serves the tutorial, the demo and
a deployment:

    FLUXON_PRIVATE_KEY        the deployment key (else the file ``fluxon.key`` next to this one)
    SCHOOL_DATA_DIR           folder for the database and schema snapshots (default: ./var here)
    SCHOOL_DATABASE_PATH      the SQLite file (default: $SCHOOL_DATA_DIR/school.sqlite3)
    SCHOOL_SCHEMA_DIR         the schema snapshots (default: $SCHOOL_DATA_DIR/schema)

Workers load it as ``examples.school.router:router``; the broker never imports it.
"""

import os
from pathlib import Path

from fluxon.routing import Router

from . import models, views

HERE = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("SCHOOL_DATA_DIR") or HERE / "var")
KEY_FILE = HERE / "fluxon.key"


def _private_key():
    """FLUXON_PRIVATE_KEY, else the key file next to this module, else None (plain mode)."""
    key = os.environ.get("FLUXON_PRIVATE_KEY", "").strip()
    if key:
        return key
    if KEY_FILE.exists():
        return KEY_FILE.read_text(encoding="ascii").strip()
    return None


SERVER_SECURITY_KEY = _private_key()
DATABASE_SCHEMA_DIR = os.environ.get("SCHOOL_SCHEMA_DIR") or str(DATA_DIR / "schema")
DATABASE_PATH = os.environ.get("SCHOOL_DATABASE_PATH") or str(DATA_DIR / "school.sqlite3")
Path(DATABASE_PATH).parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder

router = Router(
    # routing setup
    mapping={
        "signup": views.signup,
        "login": views.login,
        "logout": views.logout,
        "whoami": views.whoami,
        "create_course": views.create_course,
        "enroll": views.enroll,
        "my_courses": views.my_courses,
    },
    # server setup
    private_key=SERVER_SECURITY_KEY,
    database_schema_dir=DATABASE_SCHEMA_DIR,
    database_path=DATABASE_PATH,
    models=models,
)
