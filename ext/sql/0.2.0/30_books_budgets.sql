
-- ======================================================================
-- 0.2.0, the books (issue 11, items 7 and 8): budgets count prompt tokens
-- and the tokens reserved by requests in flight; check_budget() answers a
-- plain user about itself only.
--
-- At admission the backend (ext/budget.c) calls admission_budgets() (the
-- tag's grants, and whether any budget applies), then, when one does,
-- reserves prompt tokens + max_tokens in shared memory and calls
-- check_budget_reserved() with what requests in flight had reserved before
-- it.  The worker releases a reservation once the request's usage row is
-- committed.  docs/security.md states what this guarantees.
-- ======================================================================

-- The role that called, as SET ROLE or the session made it (not the owner a
-- SECURITY DEFINER function runs as).
CREATE FUNCTION calling_role()
RETURNS name
LANGUAGE C STABLE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_calling_role';

-- Tokens reserved by the requests in flight, as a budget of the role (any
-- tag), of the tag (any role) and of the role within the tag sees them.
CREATE FUNCTION budget_reserved_tokens(role name, tag text,
                                       OUT role_tokens bigint, OUT tag_tokens bigint,
                                       OUT role_tag_tokens bigint)
RETURNS record
LANGUAGE C VOLATILE PARALLEL RESTRICTED
AS 'MODULE_PATHNAME', 'pg_infer_budget_reserved';

COMMENT ON FUNCTION budget_reserved_tokens(name, text) IS
    'Tokens reserved by requests in flight (prompt + max_tokens at admission, until their usage rows are committed), per role, tag and role within tag';

-- The budget check proper.  For every budget that applies (its role and
-- tag, where set, match), refuses the request when
--   tokens spent this period + reserved + requested_tokens > max_tokens  (PIB01)
--   money spent (usage.revenue) this period >= max_cost                   (PIB01)
--   tokens of requests finished in the last minute + reserved
--     + requested_tokens > tokens_per_minute                              (PIR01)
-- where "reserved" is the argument for the budget's kind (role, tag, or
-- role within tag).  A role's own budget (tag NULL) applies whatever tag a
-- request carries.  STABLE: it reads with the snapshot it is given, which
-- admission takes after summing the reservations.
CREATE FUNCTION check_budget_reserved(role name, tag text, requested_tokens bigint,
                                      reserved_role bigint, reserved_tag bigint,
                                      reserved_role_tag bigint)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    minute_ago timestamptz := now() - interval '1 minute';
    day_ago timestamptz := now() - interval '1 day';
    requested bigint := greatest(coalesce(requested_tokens, 0), 0);
    b record;
    period_start date;
    spent_tokens bigint;
    spent_money numeric;
    subject text;
    recent_tokens bigint;
    reserved bigint;
BEGIN
    FOR b IN
        SELECT * FROM @extschema@.budgets AS x
         WHERE (x.role IS NULL OR x.role = check_budget_reserved.role)
           AND (x.tag IS NULL OR x.tag = check_budget_reserved.tag)
         ORDER BY x.budget_id
    LOOP
        subject := concat_ws(' ', CASE WHEN b.role IS NOT NULL THEN format('role "%s"', b.role) END,
                             CASE WHEN b.tag IS NOT NULL THEN format('tag "%s"', b.tag) END);
        reserved := greatest(coalesce(CASE WHEN b.role IS NOT NULL AND b.tag IS NOT NULL THEN reserved_role_tag
                                           WHEN b.role IS NOT NULL THEN reserved_role
                                           ELSE reserved_tag END, 0), 0);
        IF b.max_tokens IS NOT NULL OR b.max_cost IS NOT NULL THEN
            period_start := date_trunc(b.period, now() AT TIME ZONE 'UTC')::date;
            SELECT coalesce(sum(s.tokens), 0), coalesce(sum(s.revenue), 0)
              INTO spent_tokens, spent_money
              FROM @extschema@.usage_spend AS s
             WHERE s.day >= period_start
               AND (b.role IS NULL OR s.role = b.role)
               AND (b.tag IS NULL OR s.tag = b.tag);
            IF b.max_tokens IS NOT NULL AND spent_tokens + reserved + requested > b.max_tokens THEN
                RAISE EXCEPTION 'token budget of % exceeded', subject
                      USING ERRCODE = 'PIB01',
                            DETAIL = format('%s of %s tokens spent this %s (since %s UTC) and %s reserved by requests in flight; the request may use %s more (prompt + max_tokens).',
                                            spent_tokens, b.max_tokens, b.period, to_char(period_start, 'YYYY-MM-DD'),
                                            reserved, requested),
                            HINT = 'Wait for the next period or for requests in flight to end, ask for fewer tokens, or ask a pginfer_admin to raise the budget.';
            END IF;
            IF b.max_cost IS NOT NULL AND spent_money >= b.max_cost THEN
                RAISE EXCEPTION 'spending budget of % exceeded', subject
                      USING ERRCODE = 'PIB01',
                            DETAIL = format('%s of %s spent this %s (since %s UTC).',
                                            spent_money, b.max_cost, b.period, to_char(period_start, 'YYYY-MM-DD')),
                            HINT = 'Wait for the next period, or ask a pginfer_admin to raise the budget.';
            END IF;
        END IF;
        IF b.tokens_per_minute IS NOT NULL THEN
            SELECT coalesce(sum(u.prompt_tokens + u.completion_tokens), 0)
              INTO recent_tokens
              FROM @extschema@.usage AS u
             WHERE u.finished_at > minute_ago
               AND u.started_at > day_ago
               AND (b.role IS NULL OR u.role = b.role)
               AND (b.tag IS NULL OR u.tag = b.tag);
            IF recent_tokens + reserved + requested > b.tokens_per_minute THEN
                RAISE EXCEPTION 'rate limit of % exceeded', subject
                      USING ERRCODE = 'PIR01',
                            DETAIL = format('%s tokens in the last minute and %s reserved by requests in flight, limit %s per minute; the request may use %s more.',
                                            recent_tokens, reserved, b.tokens_per_minute, requested),
                            HINT = 'Retry later.';
            END IF;
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION check_budget_reserved(name, text, bigint, bigint, bigint, bigint) IS
    'Admission only: raises PIB01 / PIR01 when spent + reserved + requested tokens exceed a budget of the role or tag';

-- At admission, before anything is reserved: refuses a tag that has grants
-- the role does not hold (42501, see tag_grants), and says whether any
-- budget applies to the role and tag (no budget: nothing to reserve).
CREATE FUNCTION admission_budgets(role name, tag text)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.check_tag_grant(admission_budgets.role, admission_budgets.tag);
    RETURN EXISTS (SELECT 1 FROM @extschema@.budgets AS b
                    WHERE (b.role IS NULL OR b.role = admission_budgets.role)
                      AND (b.tag IS NULL OR b.tag = admission_budgets.tag));
END
$$;

COMMENT ON FUNCTION admission_budgets(name, text) IS
    'Admission only: 42501 for a tag the role was not granted; whether a budget applies';

-- check_budget(role, tag, requested_tokens): may this role spend that many
-- more tokens under that tag now?  Raises PIB01 / PIR01 as admission would
-- (counting the reservations of requests in flight).  A pginfer_user may
-- ask only about itself, and only under a tag it may use; members of
-- pginfer_analyst (and so pginfer_admin) about anyone.
CREATE OR REPLACE FUNCTION check_budget(role name, tag text, requested_tokens integer)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller name := @extschema@.calling_role();
    r record;
BEGIN
    IF NOT pg_has_role(caller, 'pginfer_analyst', 'MEMBER') THEN
        IF check_budget.role IS DISTINCT FROM caller THEN
            RAISE EXCEPTION 'permission denied to check the budget of role "%"', check_budget.role
                  USING ERRCODE = 'insufficient_privilege',
                        HINT = 'A pginfer_user may check only its own budget (check_budget(current_user, ...)); members of pginfer_analyst or pginfer_admin may check any role''s.';
        END IF;
        PERFORM @extschema@.check_tag_grant(check_budget.role, check_budget.tag);
    END IF;
    SELECT * INTO r FROM @extschema@.budget_reserved_tokens(check_budget.role, check_budget.tag);
    PERFORM @extschema@.check_budget_reserved(check_budget.role, check_budget.tag,
                                              check_budget.requested_tokens,
                                              r.role_tokens, r.tag_tokens, r.role_tag_tokens);
END
$$;

COMMENT ON FUNCTION check_budget(name, text, integer) IS
    'Raises PIB01 (budget) or PIR01 (rate limit) when the role would exceed a budget of its own or of the tag by requested_tokens more (spent + reserved in flight + requested); a pginfer_user may ask about itself only';

REVOKE ALL ON FUNCTION calling_role() FROM PUBLIC;
REVOKE ALL ON FUNCTION budget_reserved_tokens(name, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION budget_reserved_tokens(name, text) TO pginfer_analyst;
REVOKE ALL ON FUNCTION check_budget_reserved(name, text, bigint, bigint, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION admission_budgets(name, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION check_budget(name, text, integer) TO pginfer_analyst;
