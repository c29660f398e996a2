{#- Device category from a user agent: bot, tablet, mobile, desktop or unknown. Mobile apps
    that send no browser user agent fall back on context.device.type (ios / android). -#}
{% macro device_category(user_agent, device_type) -%}
    {%- set ua = "lower(" ~ user_agent ~ ")" -%}
    case
        when {{ ua }} like '%bot%' or {{ ua }} like '%crawl%' or {{ ua }} like '%spider%'
            or {{ ua }} like '%slurp%' or {{ ua }} like '%headless%' or {{ ua }} like '%lighthouse%' then 'bot'
        when {{ ua }} like '%ipad%' or {{ ua }} like '%tablet%' or {{ ua }} like '%kindle%' or {{ ua }} like '%silk/%'
            or ({{ ua }} like '%android%' and {{ ua }} not like '%mobile%' and {{ ua }} not like '%dalvik%') then 'tablet'
        when {{ ua }} like '%mobi%' or {{ ua }} like '%iphone%' or {{ ua }} like '%ipod%' or {{ ua }} like '%android%'
            or {{ ua }} like '%dalvik%' or {{ ua }} like '%cfnetwork%' or {{ ua }} like '%windows phone%' then 'mobile'
        when {{ ua }} like '%windows%' or {{ ua }} like '%macintosh%' or {{ ua }} like '%x11%'
            or {{ ua }} like '%linux%' or {{ ua }} like '%cros%' then 'desktop'
        when {{ user_agent }} is null and lower({{ device_type }}) in ('ios', 'android') then 'mobile'
        else 'unknown'
    end
{%- endmacro %}
