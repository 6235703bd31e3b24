"""The stack starts and answers: the cheapest end-to-end check."""


def test_a_library_can_be_created_and_read_back(org):
    library_id = org.create_library("Rock Stars")
    data = org.client.query("query($id: ID!) { library(id: $id) { id name version libraryTypeId } }", id=library_id).ok()
    assert data["library"] == {"id": library_id, "name": "Rock Stars", "version": 0, "libraryTypeId": "people"}
