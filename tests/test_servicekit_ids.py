import uuid

from hypothesis import given
from hypothesis import strategies as st

from servicekit.ids import name_based_id


@given(namespace=st.uuids(), name=st.text())
def test_a_name_based_id_is_the_standard_version_5_uuid(namespace: uuid.UUID, name: str) -> None:
    assert name_based_id(namespace, name) == str(uuid.uuid5(namespace, name))


def test_a_name_based_id_is_stable() -> None:
    # Ids already posted must never change: one example, written down when it was first computed.
    namespace = uuid.UUID("48a547c7-617b-411c-bcb9-c3f7f392f045")
    assert name_based_id(namespace, "van-1/0/a/b") == "ea1a7538-2560-523a-b7b7-d6cfd3e0a4bb"
