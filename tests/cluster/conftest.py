"""The cluster of a test module: three namespaces (h1, h2, h3) on a bridge, Redis and SeaweedFS
on it. Taking `cluster` puts a test in the `boxes` tier (root: namespaces, a bridge)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.nodes import Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Built once per module, torn down after it even when a test failed; each test's nodes
    are stopped after it (`the_nodes_stop`)."""
    built = Cluster.open(tmp_path_factory.mktemp("cluster"))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(autouse=True)
def the_nodes_stop(request: pytest.FixtureRequest) -> Iterator[None]:
    """What a test started does not run into the next test."""
    yield
    if "cluster" in request.fixturenames:
        request.getfixturevalue("cluster").stop_nodes()
