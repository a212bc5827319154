"""The official Kubernetes Python client against a real skiff server.

Run by cli/tests/e2e/python_client.rs as `python python_client.py KUBECONFIG IMAGE`:
create, list, watch, patch (JSON patch and merge patch), replace, delete, with the
409 and 422 answers a client library handles, and a Deployment whose wasm pods become
ready. Prints each step; exits non-zero with the reason at the first surprise.
"""

import json
import sys
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "default"
DEADLINE_SECONDS = 60


def step(text):
    print(f"- {text}", flush=True)


def refused(call, status, reason):
    """Runs `call`, which must fail with `status` and a Status of `reason`; returns it."""
    try:
        call()
    except ApiException as error:
        assert error.status == status, f"expected {status}, got {error.status}: {error.body}"
        body = json.loads(error.body)
        assert body["kind"] == "Status", body
        assert body["reason"] == reason, body
        return body
    raise AssertionError(f"expected {status} {reason}, the call succeeded")


def main(kubeconfig, image):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    step("create")
    settings = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="py-settings", labels={"app": "py"}),
        data={"a": "1"},
    )
    created = core.create_namespaced_config_map(NS, settings)
    assert created.metadata.uid and created.metadata.resource_version, created
    assert created.metadata.creation_timestamp is not None, created

    step("create again: 409 AlreadyExists")
    refused(lambda: core.create_namespaced_config_map(NS, settings), 409, "AlreadyExists")

    step("an invalid object: 422 Invalid naming the field")
    bad = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Not_A_Name"))
    body = refused(lambda: core.create_namespaced_config_map(NS, bad), 422, "Invalid")
    fields = [cause["field"] for cause in body["details"]["causes"]]
    assert "metadata.name" in fields, body

    step("list by label")
    listed = core.list_namespaced_config_map(NS, label_selector="app=py")
    assert [m.metadata.name for m in listed.items] == ["py-settings"], listed
    assert listed.metadata.resource_version, listed

    step("patch: JSON patch (the client's default) and merge patch")
    core.patch_namespaced_config_map(
        "py-settings", NS, [{"op": "replace", "path": "/data/a", "value": "2"}]
    )
    merged = core.patch_namespaced_config_map(
        "py-settings",
        NS,
        {"data": {"b": "3"}},
        _content_type="application/merge-patch+json",
    )
    assert merged.data == {"a": "2", "b": "3"}, merged.data

    step("replace with a stale resourceVersion: 409 Conflict")
    stale = created
    stale.data = {"a": "stale"}
    refused(
        lambda: core.replace_namespaced_config_map("py-settings", NS, stale), 409, "Conflict"
    )

    step("replace with the current one")
    current = core.read_namespaced_config_map("py-settings", NS)
    current.data["c"] = "4"
    replaced = core.replace_namespaced_config_map("py-settings", NS, current)
    assert replaced.data == {"a": "2", "b": "3", "c": "4"}, replaced.data

    step("delete; reading it then: 404 NotFound")
    core.delete_namespaced_config_map("py-settings", NS)
    refused(lambda: core.read_namespaced_config_map("py-settings", NS), 404, "NotFound")

    step("watch from the creation: every change since, in order")
    events = []
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_config_map,
        NS,
        resource_version=created.metadata.resource_version,
        timeout_seconds=10,
    ):
        if event["object"].metadata.name != "py-settings":
            continue
        events.append((event["type"], dict(event["object"].data or {})))
        if event["type"] == "DELETED":
            stream.stop()
    assert events == [
        ("MODIFIED", {"a": "2"}),
        ("MODIFIED", {"a": "2", "b": "3"}),
        ("MODIFIED", {"a": "2", "b": "3", "c": "4"}),
        ("DELETED", {"a": "2", "b": "3", "c": "4"}),
    ], events

    step("a Deployment of wasm pods becomes available")
    labels = {"app": "py-ticker"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-ticker"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="main", image=image)]
                ),
            ),
        ),
    )
    apps.create_namespaced_deployment(NS, deployment)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        # The status is empty until the controller has written it.
        status = apps.read_namespaced_deployment_status("py-ticker", NS).status
        if status is not None and (status.available_replicas or 0) == 2:
            break
        assert time.monotonic() < deadline, f"not available in {DEADLINE_SECONDS} s: {status}"
        time.sleep(0.2)
    pods = core.list_namespaced_pod(NS, label_selector="app=py-ticker").items
    assert len(pods) == 2 and all(p.status.phase == "Running" for p in pods), pods

    step("scale through the scale subresource")
    apps.patch_namespaced_deployment_scale(
        "py-ticker",
        NS,
        {"spec": {"replicas": 1}},
        _content_type="application/merge-patch+json",
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(core.list_namespaced_pod(NS, label_selector="app=py-ticker").items) != 1:
        assert time.monotonic() < deadline, "not scaled down to 1 pod"
        time.sleep(0.2)

    step("delete it with its pods (foreground)")
    apps.delete_namespaced_deployment(
        "py-ticker", NS, body=client.V1DeleteOptions(propagation_policy="Foreground")
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    while core.list_namespaced_pod(NS, label_selector="app=py-ticker").items:
        assert time.monotonic() < deadline, "pods left behind"
        time.sleep(0.2)
    print("ok", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
