"""The fields each operation asks for, per GraphQL type: what the client's typed dicts (types.py) hold."""

MODEL_FIELDS = ("id name version ref application system status error description labels classLabels dimension aliases "
                "sha256 sizeBytes throughput provider createdDateTime modifiedDateTime")
LIBRARY_FIELDS = "id name description libraryTypeId version organizationId createdDateTime modifiedDateTime"
ENTITY_FIELDS = "id name libraryId isPublished jsondata createdDateTime"
IDENTIFIER_FIELDS = "id entityId identifierTypeId title contentType contentSha256 contentLength createdDateTime"
TASK_FIELDS = ("id engineId status progress progressMessage attempts failureReason failureMessage "
               "startedDateTime completedDateTime")
JOB_FIELDS = f"id name status libraryId createdDateTime modifiedDateTime tasks {{ records {{ {TASK_FIELDS} }} }}"
ENGINE_MODEL_FIELDS = ("id engineId libraryId libraryVersion trainJobId trainStatus accuracy embeddingModel "
                       "createdDateTime modifiedDateTime")
MATCH_FIELDS = "libraryId entityId entityName entityIdentifierId score"
RECOGNITION_FIELDS = (f"libraryEngineModelId libraryId engineId modelId threshold matches {{ {MATCH_FIELDS} }} "
                      "labels { label score } windows { startSeconds endSeconds } "
                      f"faces {{ box {{ left top width height }} landmarks {{ x y }} detectionScore matches {{ {MATCH_FIELDS} }} }}")
