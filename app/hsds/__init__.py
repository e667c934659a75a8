"""The Bruso profile of Open Referral HSDS 3.0: identifiers, vocabulary (taxonomies), the profile
files (JSON Merge Patches of the HSDS schemas, ``profile/``) and the profile's OpenAPI document.

Serving is done by ``app/routers/hsds.py``; shaping records by ``app/serialize/hsds.py``.
"""

from pathlib import Path

HSDS_VERSION = "3.0"
PROFILE_DIR = Path(__file__).resolve().parent / "profile"
LANGS = ("nl", "fr")
