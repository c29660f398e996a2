-- One row per profile, one column per computed trait declared in var corral_computed_traits
-- (dbt_project.yml), plus computed_at. Windows end at var corral_as_of (default: now).
{{ computed_traits() }}
