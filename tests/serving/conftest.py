import pytest

from attnrec.serving.client import RecommenderClient
from tests.serving import live


@pytest.fixture(scope="session")
def ray_session():
    """The session's one Ray (shared with the service below)."""
    live.start_ray()


@pytest.fixture(scope="session")
def service(checkpoint, ray_session, tmp_path_factory):
    """Ray Serve with the tiny checkpoint and a feedback log, shared by every integration test of the session."""
    from ray import serve

    yield live.start(checkpoint, tmp_path_factory.mktemp("feedback"))
    serve.shutdown()


@pytest.fixture
def client(service):
    with RecommenderClient(f"127.0.0.1:{service['port']}", timeout=30) as c:
        yield c
