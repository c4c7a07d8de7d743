"""The citizen's home screen: a pure view model (:mod:`.model`) and a standard-library HTTP edge
(:mod:`.server`) that shows it as one large, calm, auto-refreshing Danish page."""
