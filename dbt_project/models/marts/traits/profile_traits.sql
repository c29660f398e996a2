-- One row per profile, one column per computed trait declared in _traits__models.yml
-- (meta.computed_traits), plus computed_at. Windows end at var corral_as_of (default: now).
{{ computed_traits(config.get('meta', {}).get('computed_traits'), 'profile_traits (models/marts/traits/_traits__models.yml)') }}
