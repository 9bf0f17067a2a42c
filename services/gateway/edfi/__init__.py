"""Ed-Fi ODS-Admin-API's own routes for instance management, as Ed-Fi Admin App 4 and scripts
written for Admin API call them: the information endpoint at `/`, `/v2/odsInstances/manage`,
`/v3/dataStores/manage` and the tenants' instance listings, with Ed-Fi's shapes, statuses and
error bodies, over this system's jobs and rules (ODS-Admin-API b6224a88)."""
