"""Alerting as the clinicians see it: the worklist scoped to the user, the alert history with
repeat breaches folded, thresholds with their plot bands, the patient page's alerting panels
(monitoring plan, passive intervals) and the clinician's changes to one alert.

Alert state and logic stay in :mod:`backend.alerting`; these modules scope, shape and check
input. ``router`` is the JSON API of these views; the web pages call the same services.
"""
