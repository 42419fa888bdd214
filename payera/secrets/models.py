"""Storage of the local secrets backend (the embedded default). Vault keeps its own.

Nothing here is readable without the master key from the environment: data keys are stored
wrapped (AES-GCM under a master key), KV values are stored encrypted under a data key.
"""

from django.db import models


class DataKey(models.Model):
    """One version of a named data key, wrapped by the master key `master_key_id`."""

    name = models.CharField(max_length=63)
    version = models.PositiveIntegerField()
    wrapped_key = models.BinaryField()
    master_key_id = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="secrets_datakey_name_version_uniq")]
        default_permissions = ()  # no admin, no role may read wrapped key material

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class StoredSecret(models.Model):
    """A KV secret: the JSON value encrypted under the internal `kv` data key, bound to its path."""

    path = models.CharField(max_length=255, unique=True)
    ciphertext = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return self.path
