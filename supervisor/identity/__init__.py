"""Who the pod is to the store: the projected token, the STS exchange (sent ahead at start-up,
then kept fresh by the keeper), the credentials broker Litestream's SDK polls, the session policy
(and the batch-delete check it may be dropped for), the S3 clients, MinIO's and RGW's specifics,
and the CredentialService that bundles them.

May import: core, litestream.
"""
