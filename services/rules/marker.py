"""This system's mark on the databases it made (a database comment), the name a clone is built
under, and the keys of its advisory locks: pure, shared by every service that looks at the ODS
server."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

MANAGED_BY = "edfi-instance-manager"
STAGING_PREFIX = "edfi_im_staging_"  # + the job id: where a clone is built


def lock_key(*scope: object) -> int:
    """A 64-bit advisory lock key for one thing of one deployment (an instance of a tenant's
    admin database, a clone slot of a deployment): another deployment on the same server, or
    anyone else's advisory locks, cannot hold it by accident."""
    digest = hashlib.blake2b(repr(("edfi-im", *scope)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class Marker:
    """Written as the database comment: which instance (and job) this system created it for,
    in which tenant, and by which deployment (tenants, and deployments sharing a server, number
    their instances alike). A mark written before deployments were named has none."""

    instance_id: int
    job_id: uuid.UUID
    tenant: str | None = None
    deployment: str | None = None

    def render(self) -> str:
        data: dict[str, object] = {
            "managedBy": MANAGED_BY,
            "instanceId": self.instance_id,
            "jobId": str(self.job_id),
        }
        if self.tenant is not None:
            data["tenant"] = self.tenant
        if self.deployment is not None:
            data["deployment"] = self.deployment
        return json.dumps(data)

    def names(self, tenant: str | None, instance_id: int, deployment: str | None = None) -> bool:
        """Whether this is the mark of that tenant's instance (of that deployment, when both
        the mark and the caller name one)."""
        return (
            self.instance_id == instance_id
            and self.tenant == tenant
            and self.of_deployment(deployment)
        )

    def of_deployment(self, deployment: str | None) -> bool:
        """Not another deployment's (a mark without one predates them and is taken as ours)."""
        return deployment is None or self.deployment is None or self.deployment == deployment

    @staticmethod
    def parse(comment: str | None) -> Marker | None:
        if not comment:
            return None
        try:
            data = json.loads(comment)
            if data.get("managedBy") != MANAGED_BY:
                return None
            tenant = data.get("tenant")
            deployment = data.get("deployment")
            return Marker(
                int(data["instanceId"]),
                uuid.UUID(data["jobId"]),
                None if tenant is None else str(tenant),
                None if deployment is None else str(deployment),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def staging_name(job_id: uuid.UUID) -> str:
    """Where a clone is built before it gets its real name; derived from the job, so ours."""
    return f"{STAGING_PREFIX}{job_id.hex}"
