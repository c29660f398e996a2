{#-
    Audiences are the models with `meta.audience` ({name, description, owner}). The list in
    models/intermediate/audiences/int_audience_members.sql names them once (dbt must see every
    ref when it parses); audience_models() checks it against the project on every build, so an
    audience left out, or listed without its meta, fails the build naming it.
-#}
{% macro audience_models(listed) -%}
    {%- set found = {} -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.package_name == project_name -%}
        {%- set meta = (node.config.meta if node.config.meta else node.meta) or {} -%}
        {%- if 'audience' in meta -%}{%- do found.update({node.name: {'meta': meta.audience, 'path': node.original_file_path}}) -%}{%- endif -%}
    {%- endfor -%}
    {%- set missing = found.keys() | reject('in', listed) | sort -%}
    {%- if missing -%}
        {{ exceptions.raise_compiler_error("audience model(s) " ~ missing | join(', ') ~ " have meta.audience but are not listed in models/intermediate/audiences/int_audience_members.sql; add them there") }}
    {%- endif -%}
    {%- set audiences = [] -%}
    {%- for name in listed -%}
        {%- if name not in found -%}
            {{ exceptions.raise_compiler_error("int_audience_members.sql lists " ~ name ~ ", which is not a model with meta.audience {name, description, owner}") }}
        {%- endif -%}
        {%- set meta = found[name].meta -%}
        {%- if meta is not mapping or meta.keys() | reject('in', ['name', 'description', 'owner']) | list or not (meta.get('name') is string and meta.get('description') is string and meta.get('owner') is string) -%}
            {{ exceptions.raise_compiler_error("audience " ~ name ~ " (" ~ found[name].path ~ "): meta.audience must have exactly name, description and owner, as text; got: " ~ meta) }}
        {%- endif -%}
        {%- do audiences.append({'audience': name, 'name': meta.name, 'description': meta.description, 'owner': meta.owner}) -%}
    {%- endfor -%}
    {{ return(audiences) }}
{%- endmacro %}

{#- One row per (audience, profile_id) over the listed audience models. -#}
{% macro audience_members(listed) -%}
    {%- set relations = {} -%}
    {%- for name in listed -%}{%- do relations.update({name: ref(name)}) -%}{%- endfor -%}
    {%- if execute -%}{%- do audience_models(listed) -%}{%- endif -%}
    {%- for name in listed %}
    select distinct cast('{{ name }}' as {{ dbt.type_string() }}) as audience, profile_id from {{ relations[name] }}
    {%- if not loop.last %}
    union all
    {%- endif -%}
    {%- endfor %}
{%- endmacro %}

{#- The audiences, with their meta, as rows: (audience, audience_name, description, owner). -#}
{% macro audience_catalog() -%}
    {%- set members = graph.nodes.get('model.' ~ project_name ~ '.int_audience_members') if execute else none -%}
    {%- set listed = [] -%}
    {%- for node_id in (members.depends_on.nodes if members else []) if node_id.startswith('model.') -%}
        {%- do listed.append(node_id.split('.')[-1]) -%}
    {%- endfor -%}
    {%- for audience in (audience_models(listed) if execute else []) %}
    select
        cast('{{ audience.audience }}' as {{ dbt.type_string() }}) as audience,
        cast('{{ audience.name | replace("'", "''") }}' as {{ dbt.type_string() }}) as audience_name,
        cast('{{ audience.description | replace("'", "''") }}' as {{ dbt.type_string() }}) as description,
        cast('{{ audience.owner | replace("'", "''") }}' as {{ dbt.type_string() }}) as owner
    {%- if not loop.last %}
    union all
    {%- endif -%}
    {%- else %}
    select
        cast(null as {{ dbt.type_string() }}) as audience,
        cast(null as {{ dbt.type_string() }}) as audience_name,
        cast(null as {{ dbt.type_string() }}) as description,
        cast(null as {{ dbt.type_string() }}) as owner
    where 1 = 0
    {%- endfor %}
{%- endmacro %}
