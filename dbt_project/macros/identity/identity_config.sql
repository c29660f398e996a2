{#- Identity resolution settings, validated once: identifier types in priority order and the
    limited ("anchor") type. A bad setting fails the build naming the var and the value. -#}

{% macro identity_known_types() -%}
    {{ return(['user_id', 'email', 'phone', 'device_id', 'anonymous_id']) }}
{%- endmacro %}

{% macro identity_types() -%}
    {%- set order = var('corral_identifier_priority') -%}
    {%- set known = identity_known_types() -%}
    {%- if order is string or order is mapping or order | length == 0 -%}
        {{ exceptions.raise_compiler_error("var corral_identifier_priority must be a non-empty list of identifier types, highest priority first; got: " ~ order) }}
    {%- endif -%}
    {%- for type in order -%}
        {%- if type not in known -%}
            {{ exceptions.raise_compiler_error("var corral_identifier_priority: unknown identifier type '" ~ type ~ "' (known: " ~ known | join(', ') ~ ")") }}
        {%- endif -%}
        {%- if order[:loop.index0].count(type) -%}
            {{ exceptions.raise_compiler_error("var corral_identifier_priority lists '" ~ type ~ "' twice") }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(order) }}
{%- endmacro %}

{% macro identity_priority(type) -%}
    {{ return(identity_types().index(type) + 1) }}
{%- endmacro %}

{#- Limits per profile: {type: max identifiers of that type}, validated. -#}
{% macro identity_limits() -%}
    {%- set limits = var('corral_identifier_limits') -%}
    {%- if limits is none -%}{{ return({}) }}{%- endif -%}
    {%- if limits is not mapping -%}
        {{ exceptions.raise_compiler_error("var corral_identifier_limits must map identifier types to their limit per profile, e.g. {user_id: 1, email: 3}; got: " ~ limits) }}
    {%- endif -%}
    {%- for type, limit in limits.items() -%}
        {%- if type not in identity_types() -%}
            {{ exceptions.raise_compiler_error("var corral_identifier_limits names '" ~ type ~ "', which is not in corral_identifier_priority (" ~ identity_types() | join(', ') ~ ")") }}
        {%- endif -%}
        {%- if limit is not number or limit < 1 or limit != limit | int -%}
            {{ exceptions.raise_compiler_error("var corral_identifier_limits: the limit for '" ~ type ~ "' must be a whole number of at least 1; got: " ~ limit) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(limits) }}
{%- endmacro %}

{#- The anchor type: the highest-priority limited type (default user_id). A profile is named
    for its earliest identifier of this type; none when nothing is limited. -#}
{% macro identity_anchor_type() -%}
    {%- set limits = identity_limits() -%}
    {%- for type in identity_types() if type in limits -%}
        {{ return(type) }}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}

{#- True for the default shape of limits (one type, at most one per profile), which has a fast
    set-based resolution; any other limits are resolved by replaying links in time order. -#}
{% macro identity_single_anchor() -%}
    {%- set limits = identity_limits() -%}
    {{ return(limits | length == 1 and (limits.values() | list)[0] == 1) }}
{%- endmacro %}

{#- A value that must never become an identifier: the configured list (case-insensitive), or
    only zeros and dashes (^[0-]*$, which includes empty). Portable: no regex. -#}
{% macro identity_value_is_blocked(column) -%}
    (lower({{ column }}) in (
        {%- for value in var('corral_identity_blocked_values') -%}
            '{{ value | lower | replace("'", "''") }}'{% if not loop.last %}, {% endif %}
        {%- endfor -%}
    ) or replace(replace({{ column }}, '0', ''), '-', '') = '')
{%- endmacro %}

{#- How each identifier type is read from a staged message, normalized. -#}
{% macro identity_expression(type) -%}
    {%- if type == 'user_id' -%} trim(user_id)
    {%- elif type == 'anonymous_id' -%} trim(anonymous_id)
    {%- elif type == 'email' -%} lower(trim(email))
    {%- elif type == 'phone' -%} {{ normalize_phone('phone') }}
    {%- elif type == 'device_id' -%} trim(device_id)
    {%- endif -%}
{%- endmacro %}

{#- Phone numbers as '+' and digits; fewer than 5 digits is not a phone number. -#}
{% macro normalize_phone(column) -%}
    case
        when length({{ regexp_remove(column, '[^0-9]') }}) >= 5
            then '+' || {{ regexp_remove(column, '[^0-9]') }}
    end
{%- endmacro %}

{% macro regexp_remove(column, pattern) -%}
    {{ return(adapter.dispatch('regexp_remove', 'corral')(column, pattern)) }}
{%- endmacro %}

{% macro default__regexp_remove(column, pattern) -%}
    regexp_replace({{ column }}, '{{ pattern }}', '')
{%- endmacro %}

{% macro duckdb__regexp_remove(column, pattern) -%}
    regexp_replace({{ column }}, '{{ pattern }}', '', 'g')
{%- endmacro %}

{% macro postgres__regexp_remove(column, pattern) -%}
    regexp_replace({{ column }}, '{{ pattern }}', '', 'g')
{%- endmacro %}
