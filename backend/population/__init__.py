"""The population view: the patients in scope ranked by a risk score (open alerts, deviation from
baseline, adherence to the monitoring plan) and the alert burden per team."""
