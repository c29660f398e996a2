{#-
    Iterative graph algorithms for identity resolution, in portable SQL run round by round
    with run_query. Work tables live next to the calling model (`<model>__<name>`) and are
    dropped by the model's post-hook (identity_drop_work_tables). They only run in `dbt run`
    / `dbt build`; elsewhere (parse, compile, docs) they return an empty relation of the
    right shape so nothing heavy happens.
-#}

{% macro identity_iterating() -%}
    {{ return(execute and flags.WHICH in ('run', 'build')) }}
{%- endmacro %}

{% macro identity_work_relation(name) -%}
    {{ return(api.Relation.create(database=this.database, schema=this.schema, identifier=this.identifier ~ '__' ~ name, type='table')) }}
{%- endmacro %}

{% macro identity_replace_table(relation, sql) -%}
    {% do adapter.drop_relation(relation) %}
    {% do run_query(dbt.create_table_as(False, relation, sql)) %}
{%- endmacro %}

{% macro identity_drop_work_tables(names) -%}
    {%- if identity_iterating() -%}
        {%- for name in names -%}
            {% do adapter.drop_relation(identity_work_relation(name)) %}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}

{#- An undirected edge list (lo, hi) as directed pairs (u, v), both ways. -#}
{% macro both_directions(relation) -%}
    select lo as u, hi as v from {{ relation }} union all select hi as u, lo as v from {{ relation }}
{%- endmacro %}

{% macro identity_count(sql) -%}
    {%- set result = run_query("select count(*) from (" ~ sql ~ ") counted") -%}
    {{ return(result.columns[0].values()[0] | int) }}
{%- endmacro %}


{#-
    Connected components by alternating large-star and small-star (Kiveris et al., "Connected
    Components in MapReduce and Beyond", 2014): O(log n) rounds in practice, never one round
    per hop. `edges` (a relation, or a subquery with an alias) has integer columns node_a,
    node_b. Returns {relation, rounds}: the relation has (node_id, component_id) for every node
    with an edge, component_id the smallest node of its component. Fails the build if it has not converged after var corral_identity_max_rounds.
-#}
{% macro connected_components(edges) -%}
    {%- set result_relation = identity_work_relation('cc_result') -%}
    {%- if not identity_iterating() -%}
        {{ return({'relation': "(select cast(null as " ~ dbt.type_bigint() ~ ") as node_id, cast(null as " ~ dbt.type_bigint() ~ ") as component_id where 1 = 0)", 'rounds': 0}) }}
    {%- endif -%}
    {%- set done = identity_work_relation('cc_done') -%}
    {%- set roots = identity_work_relation('cc_roots') -%}
    {#- Jinja forgets loop-local `set`s between iterations: the rotating tables live in a namespace -#}
    {%- set state = namespace(
        rounds=0, done=false,
        current=identity_work_relation('cc_edges_a'), spare=identity_work_relation('cc_edges_b'), next=identity_work_relation('cc_edges_c')
    ) -%}
    {{ identity_replace_table(state.current, "
        select distinct
            case when node_a < node_b then node_a else node_b end as lo,
            case when node_a < node_b then node_b else node_a end as hi
        from " ~ edges ~ "
        where node_a <> node_b") }}
    {{ identity_replace_table(done, "select lo, hi from " ~ state.current ~ " where 1 = 0") }}
    {%- for round in range(whole_number_var('corral_identity_max_rounds', 1)) if not state.done -%}
        {%- set current = state.current -%}
        {%- set spare = state.spare -%}
        {%- set next = state.next -%}
        {#- large-star: connect every larger neighbour of u to the smallest node of u's neighbourhood -#}
        {{ identity_replace_table(spare, "
            with adjacency as (" ~ both_directions(current) ~ "),
            smallest as (
                select u, min(v) as m from adjacency group by u
            ),
            linked as (
                select adjacency.v as x, case when smallest.m < adjacency.u then smallest.m else adjacency.u end as y
                from adjacency inner join smallest on adjacency.u = smallest.u
                where adjacency.v > adjacency.u
            )
            select distinct
                case when x < y then x else y end as lo,
                case when x < y then y else x end as hi
            from linked where x <> y") }}
        {#- small-star: connect u and its smaller neighbours to the smallest of them -#}
        {{ identity_replace_table(next, "
            with adjacency as (" ~ both_directions(spare) ~ "),
            smaller as (
                select u, min(v) as m from adjacency where v < u group by u
            ),
            linked as (
                select adjacency.v as x, smaller.m as y
                from adjacency inner join smaller on adjacency.u = smaller.u
                where adjacency.v < adjacency.u
                union all
                select u as x, m as y from smaller
            )
            select distinct
                case when x < y then x else y end as lo,
                case when x < y then y else x end as hi
            from linked where x <> y") }}
        {#- a finished star (its centre is the component's smallest node, every other node hangs
            off it alone) never changes again: set it aside so later rounds only touch what is
            still unsettled, such as long chains -#}
        {{ identity_replace_table(roots, "
            with ends as (
                select lo as node from " ~ next ~ "
                union all
                select hi as node from " ~ next ~ "
            ),
            degrees as (
                select node, count(*) as degree from ends group by node
            ),
            centres as (
                select edges.lo as root, max(degrees.degree) as widest_leaf
                from " ~ next ~ " as edges inner join degrees on edges.hi = degrees.node
                group by edges.lo
            )
            select root from centres
            where widest_leaf = 1 and not exists (select 1 from " ~ next ~ " as inner_edges where inner_edges.hi = centres.root)") }}
        {% do run_query("insert into " ~ done ~ " (lo, hi) select lo, hi from " ~ next ~ " where lo in (select root from " ~ roots ~ ")") %}
        {#- not exists rather than `not in (subquery)`, which Postgres runs as a scan per row -#}
        {{ identity_replace_table(spare, "select lo, hi from " ~ next ~ " as edges where not exists (select 1 from " ~ roots ~ " as settled where settled.root = edges.lo)") }}
        {%- set state.rounds = round + 1 -%}
        {%- set remaining = identity_count("select 1 from " ~ spare) -%}
        {%- set changed = remaining and identity_count("(select lo, hi from " ~ spare ~ " except select lo, hi from " ~ current ~ ") union all (select lo, hi from " ~ current ~ " except select lo, hi from " ~ spare ~ ")") -%}
        {%- set state.current = spare -%}
        {%- set state.spare = current -%}
        {%- if remaining == 0 or changed == 0 -%}{%- set state.done = true -%}{%- endif -%}
    {%- endfor -%}
    {%- if not state.done -%}
        {{ exceptions.raise_compiler_error("identity resolution: connected components did not converge in " ~ state.rounds ~ " rounds (var corral_identity_max_rounds); the identity graph is unusual, raise the limit to finish") }}
    {%- endif -%}
    {{ identity_replace_table(result_relation, "
        with stars as (
            select lo, hi from " ~ done ~ "
            union all
            select lo, hi from " ~ state.current ~ "
        ),
        adjacency as (" ~ both_directions('stars') ~ ")
        select u as node_id, case when min(v) < u then min(v) else u end as component_id
        from adjacency group by u") }}
    {%- for name in ['cc_edges_a', 'cc_edges_b', 'cc_edges_c', 'cc_done', 'cc_roots'] -%}
        {% do adapter.drop_relation(identity_work_relation(name)) %}
    {%- endfor -%}
    {{ log("identity resolution: connected components converged in " ~ state.rounds ~ " round(s)", info=True) }}
    {{ return({'relation': result_relation, 'rounds': state.rounds}) }}
{%- endmacro %}


{#-
    Earliest-arrival label propagation inside components that hold more than one anchor (two
    user ids). Every anchor is a source carrying its own label; each round a node takes the
    neighbour label that arrives first, where a label's arrival over a path is the latest edge
    on it (the moment the path existed), edges ordered by (time, rank); a node passes on only
    the label it holds, so a label never crosses a node that belongs to another anchor. A node
    weighs only what its neighbours offer now (never its own earlier pick, which may have lost
    its support), so the rounds settle nodes in order of arrival, as replaying edges in time
    order would. Two different labels can only tie on (arrival, rank) while one of them is
    stale, circling a loop of equally old links; hop counts break those ties (a stale label
    gains hops each time round), so the rounds always converge.
    `nodes` has (node_id, is_anchor); `edges` has (node_a, node_b, linked_at, link_rank).
    Returns {relation, rounds}: (node_id, anchor_id).
-#}
{% macro earliest_arrival_labels(nodes, edges) -%}
    {%- set result_relation = identity_work_relation('ea_result') -%}
    {%- if not identity_iterating() -%}
        {{ return({'relation': "(select cast(null as " ~ dbt.type_bigint() ~ ") as node_id, cast(null as " ~ dbt.type_bigint() ~ ") as anchor_id where 1 = 0)", 'rounds': 0}) }}
    {%- endif -%}
    {%- set state = namespace(rounds=0, done=false, current=identity_work_relation('ea_labels_a'), next=identity_work_relation('ea_labels_b')) -%}
    {%- set adjacency = identity_work_relation('ea_adjacency') -%}
    {{ identity_replace_table(adjacency, "
        select node_a as src, node_b as dst, linked_at, link_rank from " ~ edges ~ "
        union all
        select node_b as src, node_a as dst, linked_at, link_rank from " ~ edges) }}
    {#- arrival null = there from the start (an anchor) -#}
    {{ identity_replace_table(state.current, "
        select node_id, node_id as anchor_id,
            cast(null as " ~ dbt.type_timestamp() ~ ") as arrived_at, cast(null as " ~ dbt.type_string() ~ ") as arrived_rank,
            0 as arrived_hops
        from " ~ nodes ~ " where is_anchor") }}
    {%- for round in range(whole_number_var('corral_identity_max_conflict_rounds', 1)) if not state.done -%}
        {%- set current = state.current -%}
        {%- set next = state.next -%}
        {{ identity_replace_table(next, "
            with offers as (
                select
                    adjacency.dst as node_id,
                    labels.anchor_id,
                    case when labels.arrived_at is null or adjacency.linked_at > labels.arrived_at
                              or (adjacency.linked_at = labels.arrived_at and adjacency.link_rank > labels.arrived_rank)
                         then adjacency.linked_at else labels.arrived_at end as arrived_at,
                    case when labels.arrived_at is null or adjacency.linked_at > labels.arrived_at
                              or (adjacency.linked_at = labels.arrived_at and adjacency.link_rank > labels.arrived_rank)
                         then adjacency.link_rank else labels.arrived_rank end as arrived_rank,
                    labels.arrived_hops + 1 as arrived_hops
                from " ~ adjacency ~ " as adjacency
                inner join " ~ current ~ " as labels on adjacency.src = labels.node_id
                union all
                select node_id, anchor_id, arrived_at, arrived_rank, arrived_hops from " ~ current ~ " where arrived_at is null
            ),
            ranked as (
                select offers.*,
                    row_number() over (
                        partition by node_id
                        order by case when arrived_at is null then 0 else 1 end, arrived_at, arrived_rank, arrived_hops, anchor_id
                    ) as preference
                from offers
            )
            select node_id, anchor_id, arrived_at, arrived_rank, arrived_hops from ranked where preference = 1") }}
        {%- set state.rounds = round + 1 -%}
        {%- set columns = "node_id, anchor_id, arrived_at, arrived_rank, arrived_hops" -%}
        {%- set changed = identity_count("(select " ~ columns ~ " from " ~ next ~ " except select " ~ columns ~ " from " ~ current ~ ") union all (select " ~ columns ~ " from " ~ current ~ " except select " ~ columns ~ " from " ~ next ~ ")") -%}
        {%- set state.current = next -%}
        {%- set state.next = current -%}
        {%- if changed == 0 -%}{%- set state.done = true -%}{%- endif -%}
    {%- endfor -%}
    {%- if not state.done -%}
        {{ exceptions.raise_compiler_error("identity resolution: resolving conflicting anchors did not converge in " ~ state.rounds ~ " rounds (var corral_identity_max_conflict_rounds)") }}
    {%- endif -%}
    {{ identity_replace_table(result_relation, "select node_id, anchor_id from " ~ state.current) }}
    {% do adapter.drop_relation(identity_work_relation('ea_labels_a')) %}
    {% do adapter.drop_relation(identity_work_relation('ea_labels_b')) %}
    {% do adapter.drop_relation(adjacency) %}
    {{ log("identity resolution: conflicting anchors resolved in " ~ state.rounds ~ " round(s)", info=True) }}
    {{ return({'relation': result_relation, 'rounds': state.rounds}) }}
{%- endmacro %}


{#-
    Replays links in time order inside the components that break a limit, for limits other
    than a single one-per-profile type (e.g. {user_id: 1, email: 2}): round r applies the r-th
    link of every such component at once (components never interact), merging the two sides'
    clusters unless the merged cluster would hold more identifiers of a limited type than
    allowed. Rounds = links in the largest such component. `nodes` has (node_id,
    identifier_type); `edges` has (node_a, node_b, linked_at, link_rank, component_id).
    Returns {relation, rounds}: (node_id, cluster_id).
-#}
{% macro replay_limited_merges(nodes, edges, limits) -%}
    {%- set result_relation = identity_work_relation('rp_result') -%}
    {%- if not identity_iterating() -%}
        {{ return({'relation': "(select cast(null as " ~ dbt.type_bigint() ~ ") as node_id, cast(null as " ~ dbt.type_bigint() ~ ") as cluster_id where 1 = 0)", 'rounds': 0}) }}
    {%- endif -%}
    {%- set ordered = identity_work_relation('rp_edges') -%}
    {{ identity_replace_table(ordered, "
        select node_a, node_b,
            row_number() over (partition by component_id order by linked_at, link_rank) as link_number
        from " ~ edges) }}
    {%- set rounds = run_query("select coalesce(max(link_number), 0) from " ~ ordered).columns[0].values()[0] | int -%}
    {%- if rounds > whole_number_var('corral_identity_max_conflict_rounds', 1) -%}
        {{ exceptions.raise_compiler_error("identity resolution: a component breaking a limit has " ~ rounds ~ " links to replay, more than var corral_identity_max_conflict_rounds") }}
    {%- endif -%}
    {%- set breaks -%}
        {%- for type, limit in limits.items() -%}
            (identifier_type = '{{ type }}' and total > {{ limit }}){% if not loop.last %} or {% endif %}
        {%- endfor -%}
    {%- endset -%}
    {%- set state = namespace(current=identity_work_relation('rp_clusters_a'), next=identity_work_relation('rp_clusters_b')) -%}
    {{ identity_replace_table(state.current, "select node_id, identifier_type, node_id as cluster_id from " ~ nodes) }}
    {%- for link in range(1, rounds + 1) -%}
        {{ identity_replace_table(state.next, "
            with link as (
                select node_a, node_b from " ~ ordered ~ " where link_number = " ~ link ~ "
            ),
            sides as (
                select a.cluster_id as cluster_a, b.cluster_id as cluster_b
                from link
                inner join " ~ state.current ~ " as a on link.node_a = a.node_id
                inner join " ~ state.current ~ " as b on link.node_b = b.node_id
                where a.cluster_id <> b.cluster_id
            ),
            merged_counts as (
                select sides.cluster_a, sides.cluster_b, members.identifier_type, count(*) as total
                from sides
                inner join " ~ state.current ~ " as members
                    on members.cluster_id = sides.cluster_a or members.cluster_id = sides.cluster_b
                group by sides.cluster_a, sides.cluster_b, members.identifier_type
            ),
            refused as (
                select distinct cluster_a, cluster_b from merged_counts where " ~ breaks ~ "
            ),
            merges as (
                select sides.cluster_a, sides.cluster_b,
                    case when sides.cluster_a < sides.cluster_b then sides.cluster_a else sides.cluster_b end as merged_into
                from sides
                left join refused on sides.cluster_a = refused.cluster_a and sides.cluster_b = refused.cluster_b
                where refused.cluster_a is null
            )
            select clusters.node_id, clusters.identifier_type, coalesce(merges.merged_into, clusters.cluster_id) as cluster_id
            from " ~ state.current ~ " as clusters
            left join merges on clusters.cluster_id = merges.cluster_a or clusters.cluster_id = merges.cluster_b") }}
        {%- set swap = state.current -%}
        {%- set state.current = state.next -%}
        {%- set state.next = swap -%}
    {%- endfor -%}
    {{ identity_replace_table(result_relation, "select node_id, cluster_id from " ~ state.current) }}
    {% do adapter.drop_relation(identity_work_relation('rp_clusters_a')) %}
    {% do adapter.drop_relation(identity_work_relation('rp_clusters_b')) %}
    {% do adapter.drop_relation(ordered) %}
    {{ log("identity resolution: replayed " ~ rounds ~ " link(s) in components that break a limit", info=True) }}
    {{ return({'relation': result_relation, 'rounds': rounds}) }}
{%- endmacro %}
