-- The web's scope filters (nurse: municipality, specialist: department) select patients by
-- these columns on every worklist, patient list and population view.
CREATE INDEX patients_municipality ON patients (municipality) WHERE active;
CREATE INDEX patients_department ON patients (department) WHERE active AND department IS NOT NULL;
