"""One botocore session for every AWS client the supervisor makes.

Each botocore session loads and caches the service models; one per client (as
boto3.session.Session() would do) costs ~10 MB each, which adds up with many databases.
"""

from __future__ import annotations

import functools

import botocore.session


@functools.cache
def session() -> botocore.session.Session:
    return botocore.session.get_session()
