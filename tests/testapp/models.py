"""A model holding encrypted fields, installed only in the test settings."""

from django.db import models

from core.fields import EncryptedJSONField, EncryptedTextField


class SecretNote(models.Model):
    name = models.CharField(max_length=50)
    secret = EncryptedTextField(null=True, blank=True)
    payload = EncryptedJSONField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.name
