"""The input probe on an object store (faceproc/executors/probe.py): a node checks that it can stat an object
(a HEAD, which needs the node's own credentials); a key that is not there is named as such. Wrong
credentials cannot be shown here: moto's server accepts any."""

from faceproc.executors.probe import check_paths
from tests.s3.test_object_storage import s3_client


def test_a_node_stats_sample_objects(s3_server):
    s3_client().put_object(Bucket="faceproc", Key="probe/a.jpg", Body=b"\xff\xd8")
    got = check_paths(["s3://faceproc/probe/a.jpg", "s3://faceproc/probe/gone.jpg", "s3://no-such-bucket/x.jpg"])
    assert got["s3://faceproc/probe/a.jpg"] is None
    assert got["s3://faceproc/probe/gone.jpg"] == "FileNotFoundError: no such object"
    assert got["s3://no-such-bucket/x.jpg"] is not None
