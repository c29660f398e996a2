{#-
    computed_traits(): the SQL of one row per profile and one column per trait, over
    profile_events, from the trait definitions in var `corral_computed_traits` (dbt_project.yml;
    models/marts/traits/_traits__models.yml describes the fields). A var, so each unit test can
    declare the traits it checks. A wrong definition fails the build with a message naming the trait.
-#}

{%- macro computed_trait_types() -%}
    {{ return({
        'event_counter': {'property': false},
        'aggregation': {'property': true},
        'most_frequent': {'property': true},
        'first': {'property': true},
        'last': {'property': true},
        'unique_list': {'property': true},
        'unique_list_count': {'property': true},
        'first_seen': {'property': false},
        'last_seen': {'property': false},
    }) }}
{%- endmacro -%}

{#- A checked copy of one definition: every key known, every value of the right shape. -#}
{% macro computed_trait_definition(definition, label, seen_names) -%}
    {%- set types = computed_trait_types() -%}
    {%- set known_keys = ['name', 'type', 'description', 'event', 'message_type', 'property', 'function', 'filter', 'window_days', 'min_occurrences'] -%}
    {%- if definition is not mapping -%}
        {{ exceptions.raise_compiler_error(label ~ ": each computed trait must be a mapping with name and type, got: " ~ definition) }}
    {%- endif -%}
    {%- set name = definition.get('name') -%}
    {%- set where = label ~ ": computed trait " ~ ((name | string | tojson) if name else '#' ~ (seen_names | length + 1)) -%}
    {%- if name is not string or not modules.re.match('^[a-z][a-z0-9_]{0,62}$', name) -%}
        {{ exceptions.raise_compiler_error(where ~ ": name must be a lower-case column name (letters, digits, underscores)") }}
    {%- elif name in seen_names or name in ('profile_id', 'computed_at') -%}
        {{ exceptions.raise_compiler_error(where ~ ": the name is already taken; trait names must be unique and not profile_id or computed_at") }}
    {%- endif -%}
    {%- set unknown = definition.keys() | reject('in', known_keys) | list -%}
    {%- if unknown -%}
        {{ exceptions.raise_compiler_error(where ~ ": unknown key(s) " ~ unknown | join(', ') ~ "; a trait takes " ~ known_keys | join(', ')) }}
    {%- endif -%}
    {%- set type = definition.get('type') -%}
    {%- if type not in types -%}
        {{ exceptions.raise_compiler_error(where ~ ": unknown type " ~ (type | string | tojson) ~ "; use one of " ~ types.keys() | join(', ')) }}
    {%- endif -%}
    {%- set property = definition.get('property') -%}
    {%- if types[type].property and not property -%}
        {{ exceptions.raise_compiler_error(where ~ ": type " ~ type ~ " needs a property (the event property it reads, e.g. revenue or product.category)") }}
    {%- elif not types[type].property and property -%}
        {{ exceptions.raise_compiler_error(where ~ ": type " ~ type ~ " takes no property") }}
    {%- elif property and (property is not string or not modules.re.match('^[A-Za-z_][A-Za-z0-9_ ]*([.][A-Za-z_][A-Za-z0-9_ ]*)*$', property)) -%}
        {{ exceptions.raise_compiler_error(where ~ ": property " ~ (property | string | tojson) ~ " must be a dotted path of names, e.g. revenue or product.category") }}
    {%- endif -%}
    {%- set function = definition.get('function') -%}
    {%- if (type == 'aggregation') != (function is not none) or (function is not none and function not in ('sum', 'avg', 'min', 'max')) -%}
        {{ exceptions.raise_compiler_error(where ~ ": " ~ ("an aggregation needs function: sum, avg, min or max" if type == 'aggregation' else "only an aggregation takes a function")) }}
    {%- endif -%}
    {%- set events = definition.get('event') -%}
    {%- set events = [events] if events is string else events -%}
    {%- if events is not none and (events is not iterable or events is mapping or events | length == 0 or events | reject('string') | list) -%}
        {{ exceptions.raise_compiler_error(where ~ ": event must be an event name or a list of them") }}
    {%- endif -%}
    {%- set message_type = definition.get('message_type', 'track' if events else none) -%}
    {%- if message_type is not none and message_type not in ('track', 'page', 'screen', 'identify', 'group', 'alias') -%}
        {{ exceptions.raise_compiler_error(where ~ ": message_type must be track, page, screen, identify, group or alias") }}
    {%- endif -%}
    {%- set window_days = definition.get('window_days') -%}
    {%- if window_days is not none and (window_days is not number or window_days != window_days | int or window_days < 1) -%}
        {{ exceptions.raise_compiler_error(where ~ ": window_days must be a whole number of days, at least 1 (the trait looks at the last N days before corral_as_of)") }}
    {%- endif -%}
    {%- set min_occurrences = definition.get('min_occurrences', 2 if type == 'most_frequent' else none) -%}
    {%- if (type == 'most_frequent') != (min_occurrences is not none) or (min_occurrences is not none and (min_occurrences is not number or min_occurrences != min_occurrences | int or min_occurrences < 1)) -%}
        {{ exceptions.raise_compiler_error(where ~ ": " ~ ("min_occurrences must be a whole number of at least 1" if type == 'most_frequent' else "only most_frequent takes min_occurrences")) }}
    {%- endif -%}
    {%- set filter = definition.get('filter') -%}
    {%- if filter is not none and filter is not string -%}
        {{ exceptions.raise_compiler_error(where ~ ": filter must be text, a condition like \"currency = 'USD' and revenue > 10\"") }}
    {%- endif -%}
    {%- do seen_names.append(name) -%}
    {{ return({
        'name': name, 'type': type, 'label': where, 'events': events, 'message_type': message_type,
        'property': property, 'function': function, 'filter': filter,
        'window_days': window_days | int if window_days is not none else none,
        'min_occurrences': min_occurrences | int if min_occurrences is not none else none,
    }) }}
{%- endmacro %}

{#- An event field a trait reads: `plan`, `properties.plan`, `context.page.path`, `traits.email`,
    as SQL over its JSON column; or, given a `fields` registry ({(column, path): alias}), as the
    alias of a column the caller extracts once for all traits (event_fields_extracted). -#}
{% macro event_field(path, default_column='properties', fields=none) -%}
    {%- set path = path.split('.') if path is string else path -%}
    {%- set column = default_column -%}
    {%- if path | length > 1 and path[0] | lower in ('properties', 'context', 'traits') -%}
        {%- set column = path[0] | lower -%}
        {%- set path = path[1:] -%}
    {%- endif -%}
    {%- if fields is none -%}
        {{ return(json_extract_string(column, path)) }}
    {%- endif -%}
    {%- set key = (column, path | join('.')) -%}
    {%- if key not in fields -%}{%- do fields.update({key: {'alias': 'field_' ~ (fields | length + 1), 'column': column, 'path': path}}) -%}{%- endif -%}
    {{ return(fields[key].alias) }}
{%- endmacro %}

{#- The registered fields as columns, each JSON column parsed once for all its fields. -#}
{% macro event_fields_extracted(fields, relation) -%}
    {%- set columns = fields.values() | map(attribute='column') | unique | list -%}
    select
        extracted.*
        {%- for field in fields.values() -%}
        {%- set paths = fields.values() | selectattr('column', 'equalto', field.column) | map(attribute='path') | list %},
        {{ array_item(field.column ~ '_fields', paths.index(field.path) + 1) }} as {{ field.alias }}
        {%- endfor %}
    from (
        select
            *
            {%- for column in columns -%}
            {%- set paths = fields.values() | selectattr('column', 'equalto', column) | map(attribute='path') | list %},
            {{ json_extract_strings(column, paths) }} as {{ column }}_fields
            {%- endfor %}
        from {{ relation }}
        {{ optimization_fence() }}
    ) as extracted
{%- endmacro %}

{#- The condition an event must meet to count for a trait (event, message type, window, filter). -#}
{% macro computed_trait_condition(trait, fields) -%}
    {%- set parts = [] -%}
    {%- if trait.message_type -%}{%- do parts.append("message_type = '" ~ trait.message_type ~ "'") -%}{%- endif -%}
    {%- if trait.events -%}
        {%- set quoted = [] -%}
        {%- for event in trait.events -%}{%- do quoted.append("'" ~ event | replace("'", "''") ~ "'") -%}{%- endfor -%}
        {%- do parts.append("event_name in (" ~ quoted | join(', ') ~ ")") -%}
    {%- endif -%}
    {%- if trait.window_days -%}
        {%- do parts.append("occurred_at > " ~ dbt.dateadd('day', -trait.window_days, as_of())) -%}
    {%- endif -%}
    {%- if trait.filter -%}{%- do parts.append("(" ~ safe_filter(trait.filter, trait.label, fields=fields) ~ ")") -%}{%- endif -%}
    {%- if trait.property -%}{%- do parts.append(event_field(trait.property, fields=fields) ~ " is not null") -%}{%- endif -%}
    {{ return(parts | join(' and ') if parts else '1 = 1') }}
{%- endmacro %}

{% macro computed_traits() -%}
    {%- set profiles = ref('profiles') -%}
    {%- set profile_events = ref('profile_events') -%}
    {%- if not execute -%}
        select profile_id from {{ profiles }}
        {{- return('') -}}
    {%- endif -%}
    {%- set label = 'var corral_computed_traits' -%}
    {%- set definitions = var('corral_computed_traits', none) -%}
    {%- if definitions is none or definitions is string or definitions is mapping or definitions is not iterable or definitions | length == 0 -%}
        {{ exceptions.raise_compiler_error(label ~ " must be a list of trait definitions") }}
    {%- endif -%}
    {%- set names = [] -%}
    {%- set traits = [] -%}
    {%- set fields = {} -%}
    {%- for definition in definitions -%}
        {%- set trait = computed_trait_definition(definition, label, names) -%}
        {%- do trait.update({'condition': computed_trait_condition(trait, fields), 'value': event_field(trait.property, fields=fields) if trait.property else none}) -%}
        {%- do traits.append(trait) -%}
    {%- endfor -%}
    {%- set grouped = traits | selectattr('type', 'in', ['most_frequent', 'unique_list']) | list -%}
    {%- set any_event = traits | selectattr('events', 'none') | list -%}

with

profiles as (

    select profile_id from {{ profiles }}

),

events as (

    select
        profile_id,
        message_type,
        event_name,
        occurred_at,
        {{ sortable_timestamp('occurred_at') }} || message_id as event_order
        {%- for field in fields.values() %},
        {{ field.alias }}
        {%- endfor %}
    from ({{ event_fields_extracted(fields, profile_events) }}) as profile_events
    where occurred_at <= {{ as_of() }}
    {%- if not any_event %}
        {%- set all_events = [] -%}
        {%- for trait in traits %}{% for event in trait.events %}{% do all_events.append("'" ~ event | replace("'", "''") ~ "'") %}{% endfor %}{% endfor %}
        and event_name in ({{ all_events | unique | join(', ') }})
    {%- endif %}

),

aggregated as (

    select
        profile_id
        {%- for trait in traits if trait.type not in ['most_frequent', 'unique_list'] %},
        {% set condition = trait.condition -%}
        {%- set value = trait.value -%}
        {%- if trait.type == 'event_counter' -%}
        count(case when {{ condition }} then 1 end)
        {%- elif trait.type == 'aggregation' -%}
        {{ trait.function }}(case when {{ condition }} then {{ number_or_null(value) }} end)
        {%- elif trait.type == 'unique_list_count' -%}
        count(distinct case when {{ condition }} then {{ value }} end)
        {%- elif trait.type == 'first_seen' -%}
        min(case when {{ condition }} then occurred_at end)
        {%- elif trait.type == 'last_seen' -%}
        max(case when {{ condition }} then occurred_at end)
        {%- else -%}
        {{ value_at_order(value, 'event_order', condition, trait.type) }}
        {%- endif %} as {{ trait.name }}
        {%- endfor %}
    from events
    group by profile_id

),
{%- for trait in grouped %}

{{ trait.name }}_values as (

    select profile_id, {{ trait.value }} as trait_value, count(*) as occurrences
    from events
    where {{ trait.condition }}
    group by profile_id, {{ trait.value }}

),
{%- if trait.type == 'most_frequent' %}

{{ trait.name }}_trait as (

    select profile_id, trait_value as {{ trait.name }}
    from (
        select
            profile_id,
            trait_value,
            occurrences,
            row_number() over (partition by profile_id order by occurrences desc, trait_value) as popularity
        from {{ trait.name }}_values
    ) ranked
    where popularity = 1 and occurrences >= {{ trait.min_occurrences }}

),
{%- else %}

{{ trait.name }}_trait as (

    select profile_id, {{ json_array_agg('trait_value') }} as {{ trait.name }}
    from {{ trait.name }}_values
    group by profile_id

),
{%- endif %}
{%- endfor %}

final as (

    select
        profiles.profile_id
        {%- for trait in traits %},
        {% if trait.type in ['event_counter', 'unique_list_count'] -%}
        coalesce(aggregated.{{ trait.name }}, 0)
        {%- elif trait.type in ['most_frequent', 'unique_list'] -%}
        {{ trait.name }}_trait.{{ trait.name }}
        {%- else -%}
        aggregated.{{ trait.name }}
        {%- endif %} as {{ trait.name }}
        {%- endfor %},
        {{ build_time() }} as computed_at
    from profiles
    left join aggregated on profiles.profile_id = aggregated.profile_id
    {%- for trait in grouped %}
    left join {{ trait.name }}_trait on profiles.profile_id = {{ trait.name }}_trait.profile_id
    {%- endfor %}

)

select * from final
{%- endmacro %}

{#- The value on the first (or last) event meeting the condition, events ordered by
    `order_column` (fixed-width sortable text, so every engine picks the same one). -#}
{% macro value_at_order(value, order_column, condition, which) -%}
    {{ return(adapter.dispatch('value_at_order', 'corral')(value, order_column, condition, which)) }}
{%- endmacro %}

{% macro default__value_at_order(value, order_column, condition, which) -%}
    {{ exceptions.raise_compiler_error("corral: value_at_order has no implementation for adapter '" ~ adapter.type() ~ "'; add " ~ adapter.type() ~ "__value_at_order in dbt_project/macros/traits/computed_traits.sql") }}
{%- endmacro %}

{% macro spark__value_at_order(value, order_column, condition, which) -%}
    {{ 'min_by' if which == 'first' else 'max_by' }}(case when {{ condition }} then {{ value }} end, case when {{ condition }} then {{ order_column }} end)
{%- endmacro %}

{% macro duckdb__value_at_order(value, order_column, condition, which) -%}
    {{ 'arg_min' if which == 'first' else 'arg_max' }}({{ value }}, {{ order_column }}) filter (where {{ condition }})
{%- endmacro %}

{% macro postgres__value_at_order(value, order_column, condition, which) -%}
    (array_agg({{ value }} order by {{ order_column }}{{ ' desc' if which == 'last' else '' }}) filter (where {{ condition }}))[1]
{%- endmacro %}
