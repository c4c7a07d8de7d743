"""Administration: enrol agents (MQTT credentials + one-time enrolment code), bind agents,
register devices, manage teams, municipalities, departments and users. Admins see no
clinical data."""
