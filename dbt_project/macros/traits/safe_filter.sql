{#-
    safe_filter(text, label, json_column='properties'): compile a condition written by a user
    (a computed trait's filter) into SQL, or fail the build naming `label`.

    The condition is parsed, not pasted: only column references, literals, comparisons
    (= <> != < <= > >=), and / or / not, parentheses, [not] in (...), [not] like, is [not] null,
    [not] between and the functions lower, upper, trim, length and coalesce are accepted.
    Anything else -- a second statement, a subquery, a comment, another function -- is refused.

    Names refer to the event's JSON: `plan` or `properties.plan` is properties.plan;
    `context.page.path` and `traits.email` read those columns. A name compared with a number is
    read as a number; `is_trial` alone means is_trial = 'true'.

    The Python twin in dagster_defs/expressions.py checks the same rules with sqlglot before a
    build starts; tests/test_traits.py holds both to the same verdicts.
-#}
{% macro safe_filter(text, label, json_column='properties', fields=none) -%}
    {%- set result = safe_filter_result(text, json_column, fields) -%}
    {%- if result.error is not none -%}
        {{ exceptions.raise_compiler_error(label ~ ": filter " ~ (text | tojson) ~ " is not a plain boolean expression: " ~ result.error) }}
    {%- endif -%}
    {{ return(result.sql) }}
{%- endmacro %}

{#- {'sql': ..., 'error': none} or {'sql': none, 'error': 'what is wrong (at character N)'} -#}
{% macro safe_filter_result(text, json_column='properties', fields=none) -%}
    {%- set ns = namespace(pos=0, error=none, kind=none, text_sql=none, number_sql=none, json_column=json_column, fields=fields) -%}
    {%- set tokens = _safe_filter_tokens(text | string, ns) -%}
    {%- if ns.error is not none -%}{%- set ns.pos = tokens | length - 1 -%}{%- endif -%}
    {%- set sql = _safe_filter_or(tokens, ns) | trim -%}
    {%- if ns.error is none and tokens[ns.pos].kind != 'eof' -%}
        {%- set ns.error = "unexpected '" ~ tokens[ns.pos].text ~ "'" -%}
    {%- endif -%}
    {%- if ns.error is not none -%}
        {{ return({'sql': none, 'error': ns.error ~ " (at character " ~ (tokens[[ns.pos, tokens | length - 1] | min].at + 1) ~ ")"}) }}
    {%- endif -%}
    {{ return({'sql': sql, 'error': none}) }}
{%- endmacro %}

{#- The tokens of `text`, ending in an eof token; a character no token starts with stops the
    parse there (ns.error is set and the eof token takes its place). -#}
{% macro _safe_filter_tokens(text, ns) -%}
    {%- set pattern = "\\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?[0-9]+(?:[.][0-9]+)?)|(?P<qid>\"[^\"']+\")|(?P<id>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><>|!=|<=|>=|=|<|>)|(?P<punct>[(),.])|(?P<bad>\\S))" -%}
    {%- set tokens = [] -%}
    {%- for match in modules.re.finditer(pattern, text) if ns.error is none -%}
        {%- set kind = match.lastgroup -%}
        {%- if kind == 'bad' -%}
            {%- set ns.error = "'" ~ match.group(kind) ~ "' is not allowed" -%}
            {%- do tokens.append({'kind': 'eof', 'text': match.group(kind), 'kw': '', 'at': match.start(kind)}) -%}
        {%- elif kind is not none -%}
            {%- do tokens.append({'kind': kind, 'text': match.group(kind), 'kw': (match.group(kind) | lower if kind == 'id' else match.group(kind)), 'at': match.start(kind)}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if ns.error is none -%}
        {%- do tokens.append({'kind': 'eof', 'text': 'end of filter', 'kw': '', 'at': text | length}) -%}
    {%- endif -%}
    {{ return(tokens) }}
{%- endmacro %}

{% macro _safe_filter_fail(ns, message) -%}
    {%- if ns.error is none -%}{%- set ns.error = message -%}{%- endif -%}
{%- endmacro %}

{% macro _safe_filter_set(ns, kind, text_sql, number_sql) -%}
    {%- set ns.kind = kind -%}
    {%- set ns.text_sql = text_sql -%}
    {%- set ns.number_sql = number_sql -%}
{%- endmacro %}

{% macro _safe_filter_expect(tokens, ns, kw) -%}
    {%- if tokens[ns.pos].kw == kw -%}
        {%- set ns.pos = ns.pos + 1 -%}
    {%- else -%}
        {{- _safe_filter_fail(ns, "expected '" ~ kw ~ "' but found '" ~ tokens[ns.pos].text ~ "'") -}}
    {%- endif -%}
{%- endmacro %}

{#- or_expr := and_expr ('or' and_expr)* -#}
{% macro _safe_filter_or(tokens, ns) -%}
    {%- set parts = [_safe_filter_and(tokens, ns) | trim] -%}
    {%- for _ in tokens if ns.error is none and tokens[ns.pos].kw == 'or' -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {%- do parts.append(_safe_filter_and(tokens, ns) | trim) -%}
    {%- endfor -%}
    {{- parts[0] if parts | length == 1 else '(' ~ parts | join(' or ') ~ ')' -}}
{%- endmacro %}

{#- and_expr := not_expr ('and' not_expr)* -#}
{% macro _safe_filter_and(tokens, ns) -%}
    {%- set parts = [_safe_filter_not(tokens, ns) | trim] -%}
    {%- for _ in tokens if ns.error is none and tokens[ns.pos].kw == 'and' -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {%- do parts.append(_safe_filter_not(tokens, ns) | trim) -%}
    {%- endfor -%}
    {{- parts[0] if parts | length == 1 else '(' ~ parts | join(' and ') ~ ')' -}}
{%- endmacro %}

{#- not_expr := 'not' not_expr | '(' or_expr ')' | predicate -#}
{% macro _safe_filter_not(tokens, ns) -%}
    {%- if ns.error is not none -%}
    {%- elif tokens[ns.pos].kw == 'not' -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {{- '(not ' ~ (_safe_filter_not(tokens, ns) | trim) ~ ')' -}}
    {%- elif tokens[ns.pos].kw == '(' -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {%- set inner = _safe_filter_or(tokens, ns) | trim -%}
        {{- _safe_filter_expect(tokens, ns, ')') -}}
        {{- '(' ~ inner ~ ')' -}}
    {%- else -%}
        {{- _safe_filter_predicate(tokens, ns) | trim -}}
    {%- endif -%}
{%- endmacro %}

{#- predicate := value (op value | is [not] null | [not] in (value, ...) | [not] like value
                 | [not] between value and value)?   (a lone value must be a name or true/false) -#}
{% macro _safe_filter_predicate(tokens, ns) -%}
    {{- _safe_filter_value(tokens, ns) -}}
    {%- set left = {'kind': ns.kind, 'text': ns.text_sql, 'number': ns.number_sql} -%}
    {%- set kw = tokens[ns.pos].kw -%}
    {%- set negated = kw == 'not' and tokens[ns.pos + 1].kw in ('in', 'like', 'between') -%}
    {%- if negated -%}{%- set ns.pos = ns.pos + 1 -%}{%- set kw = tokens[ns.pos].kw -%}{%- endif -%}
    {%- set prefix = 'not ' if negated else '' -%}
    {%- if ns.error is not none -%}
    {%- elif kw in ('=', '<>', '!=', '<', '<=', '>', '>=') -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {{- _safe_filter_value(tokens, ns) -}}
        {%- set right = {'kind': ns.kind, 'text': ns.text_sql, 'number': ns.number_sql} -%}
        {%- set sides = _safe_filter_typed(ns, [left, right]) -%}
        {{- sides[0] ~ ' ' ~ ('<>' if kw == '!=' else kw) ~ ' ' ~ sides[1] if sides else '' -}}
    {%- elif kw == 'is' -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {%- set is_not = tokens[ns.pos].kw == 'not' -%}
        {%- if is_not -%}{%- set ns.pos = ns.pos + 1 -%}{%- endif -%}
        {{- _safe_filter_expect(tokens, ns, 'null') -}}
        {{- left.text ~ (' is not null' if is_not else ' is null') -}}
    {%- elif kw == 'in' -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {{- _safe_filter_expect(tokens, ns, '(') -}}
        {%- set items = [left] -%}
        {%- for _ in tokens if ns.error is none and (items | length == 1 or tokens[ns.pos].kw == ',') -%}
            {%- if items | length > 1 -%}{%- set ns.pos = ns.pos + 1 -%}{%- endif -%}
            {{- _safe_filter_value(tokens, ns) -}}
            {%- do items.append({'kind': ns.kind, 'text': ns.text_sql, 'number': ns.number_sql}) -%}
        {%- endfor -%}
        {{- _safe_filter_expect(tokens, ns, ')') -}}
        {%- set sides = _safe_filter_typed(ns, items) -%}
        {{- sides[0] ~ ' ' ~ prefix ~ 'in (' ~ sides[1:] | join(', ') ~ ')' if sides else '' -}}
    {%- elif kw == 'like' -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {{- _safe_filter_value(tokens, ns) -}}
        {%- if ns.kind != 'string' -%}{{- _safe_filter_fail(ns, "like needs a quoted pattern") -}}{%- endif -%}
        {{- left.text ~ ' ' ~ prefix ~ 'like ' ~ ns.text_sql -}}
    {%- elif kw == 'between' -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {{- _safe_filter_value(tokens, ns) -}}
        {%- set low = {'kind': ns.kind, 'text': ns.text_sql, 'number': ns.number_sql} -%}
        {{- _safe_filter_expect(tokens, ns, 'and') -}}
        {{- _safe_filter_value(tokens, ns) -}}
        {%- set sides = _safe_filter_typed(ns, [left, low, {'kind': ns.kind, 'text': ns.text_sql, 'number': ns.number_sql}]) -%}
        {{- sides[0] ~ ' ' ~ prefix ~ 'between ' ~ sides[1] ~ ' and ' ~ sides[2] if sides else '' -}}
    {%- elif left.kind == 'name' -%}
        {{- left.text ~ " = 'true'" -}}
    {%- elif left.kind == 'boolean' -%}
        {{- '1 = 1' if left.text == "'true'" else '1 = 0' -}}
    {%- else -%}
        {{- _safe_filter_fail(ns, "'" ~ tokens[ns.pos - 1].text ~ "' is a value, not a condition; compare it with something") -}}
    {%- endif -%}
{%- endmacro %}

{#- Operands of one comparison as SQL: as numbers when any of them is a number, else as text. -#}
{% macro _safe_filter_typed(ns, operands) -%}
    {%- set kinds = operands | map(attribute='kind') | list -%}
    {%- if ns.error is not none -%}
        {{ return(none) }}
    {%- elif 'null' in kinds -%}
        {{- _safe_filter_fail(ns, "compare with null using 'is null' or 'is not null'") -}}
        {{ return(none) }}
    {%- elif 'number' in kinds -%}
        {%- if 'string' in kinds or 'boolean' in kinds -%}
            {{- _safe_filter_fail(ns, "a number is compared with text; quote both or neither") -}}
            {{ return(none) }}
        {%- endif -%}
        {{ return(operands | map(attribute='number') | list) }}
    {%- endif -%}
    {{ return(operands | map(attribute='text') | list) }}
{%- endmacro %}

{#- value := name ('.' name)* | 'string' | number | true | false | null | function '(' value, ... ')'
    Sets ns.kind (name, string, number, boolean, null, function) and its SQL as text and number. -#}
{% macro _safe_filter_value(tokens, ns) -%}
    {%- set token = tokens[ns.pos] -%}
    {%- set functions = {'lower': 'string', 'upper': 'string', 'trim': 'string', 'length': 'number', 'coalesce': 'string'} -%}
    {%- set reserved = ['select', 'from', 'where', 'union', 'with', 'as', 'into', 'drop', 'delete', 'insert', 'update', 'create', 'alter', 'truncate', 'grant', 'exec', 'execute', 'call', 'copy', 'attach', 'pragma', 'install', 'load', 'set', 'and', 'or', 'not', 'in', 'is', 'like', 'between', 'case', 'when', 'then', 'else', 'end', 'exists', 'any', 'all', 'some', 'cast'] -%}
    {%- if ns.error is not none -%}
    {%- elif token.kind == 'id' and token.kw in reserved -%}
        {{- _safe_filter_fail(ns, "'" ~ token.text ~ "' is not allowed here: only names, values, comparisons and and/or/not (no subqueries or statements)") -}}
    {%- elif token.kind == 'str' -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {{- _safe_filter_set(ns, 'string', token.text, none) -}}
    {%- elif token.kind == 'num' -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {{- _safe_filter_set(ns, 'number', "'" ~ token.text ~ "'", token.text) -}}
    {%- elif token.kind == 'id' and token.kw in ('true', 'false') -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {{- _safe_filter_set(ns, 'boolean', "'" ~ token.kw ~ "'", none) -}}
    {%- elif token.kind == 'id' and token.kw == 'null' -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {{- _safe_filter_set(ns, 'null', 'null', 'null') -}}
    {%- elif token.kind == 'id' and tokens[ns.pos + 1].kw == '(' -%}
        {%- if token.kw not in functions -%}
            {{- _safe_filter_fail(ns, "function " ~ token.text ~ "() is not allowed; allowed: " ~ functions.keys() | sort | join('(), ') ~ "()") -}}
        {%- else -%}
            {%- set ns.pos = ns.pos + 2 -%}
            {%- set arguments = [] -%}
            {%- for _ in tokens if ns.error is none and tokens[ns.pos].kw != ')' and (arguments | length == 0 or tokens[ns.pos].kw == ',') -%}
                {%- if arguments | length > 0 -%}{%- set ns.pos = ns.pos + 1 -%}{%- endif -%}
                {{- _safe_filter_value(tokens, ns) -}}
                {%- do arguments.append(ns.text_sql) -%}
            {%- endfor -%}
            {{- _safe_filter_expect(tokens, ns, ')') -}}
            {%- if ns.error is none and (arguments | length == 0 or (token.kw != 'coalesce' and arguments | length != 1)) -%}
                {{- _safe_filter_fail(ns, token.kw ~ "() takes " ~ ("one or more values" if token.kw == 'coalesce' else "one value")) -}}
            {%- endif -%}
            {%- set call = token.kw ~ '(' ~ arguments | join(', ') ~ ')' -%}
            {%- if functions[token.kw] == 'string' -%}
                {{- _safe_filter_set(ns, 'function', call, number_or_null(call)) -}}
            {%- else -%}
                {{- _safe_filter_set(ns, 'number', call, call) -}}
            {%- endif -%}
        {%- endif -%}
    {%- elif token.kind in ('id', 'qid') -%}
        {%- set path = [token.text.strip('"')] -%}
        {%- set ns.pos = ns.pos + 1 -%}
        {%- for _ in tokens if ns.error is none and tokens[ns.pos].kw == '.' -%}
            {%- if tokens[ns.pos + 1].kind in ('id', 'qid') -%}
                {%- do path.append(tokens[ns.pos + 1].text.strip('"')) -%}
                {%- set ns.pos = ns.pos + 2 -%}
            {%- else -%}
                {{- _safe_filter_fail(ns, "a name must follow '.'") -}}
            {%- endif -%}
        {%- endfor -%}
        {%- set extracted = event_field(path, ns.json_column, ns.fields) -%}
        {{- _safe_filter_set(ns, 'name', extracted, number_or_null(extracted)) -}}
    {%- else -%}
        {{- _safe_filter_fail(ns, "expected a name or a value but found '" ~ token.text ~ "'") -}}
    {%- endif -%}
{%- endmacro %}

{#- dbt run-operation check_filters --args '{filters: ["plan = 1", ...]}': one JSON line per
    filter with its SQL or its error, for tests and for trying a filter out. -#}
{% macro check_filters(filters) -%}
    {%- for text in filters -%}
        {%- do print(tojson({'filter': text, 'result': safe_filter_result(text)})) -%}
    {%- endfor -%}
{%- endmacro %}
