
-- ======================================================================
-- 0.2.0, the books (issue 11, item 9): tags bound to the roles that may use
-- them.  A tag with no row here stays free-form (any role may put it on its
-- requests); a tag with rows may be used only by those roles and their
-- members.  Admission (admission_budgets) and check_budget() refuse any
-- other role with 42501.  Budgets of a tag are only as strong as its
-- grants: grant every tag that carries a budget.  A role's own budget (tag
-- NULL) applies whatever tag it uses.
-- ======================================================================

CREATE TABLE tag_grants (
    tag   text NOT NULL CHECK (tag <> ''),
    role  name NOT NULL,
    PRIMARY KEY (tag, role)
);
COMMENT ON TABLE tag_grants IS
    'Roles (and their members) that may use a tag; a tag with no grant is free-form';

SELECT pg_catalog.pg_extension_config_dump('tag_grants', '');

GRANT SELECT ON tag_grants TO pginfer_analyst;
GRANT INSERT, UPDATE, DELETE ON tag_grants TO pginfer_admin;

-- 42501 unless the role may use the tag (no tag, a tag without grants, or a
-- grant to the role or a role it is a member of).  A grant naming a role
-- that no longer exists grants nothing.
CREATE FUNCTION check_tag_grant(role name, tag text)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF check_tag_grant.tag IS NULL OR check_tag_grant.tag = '' THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.tag_grants AS g WHERE g.tag = check_tag_grant.tag) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.tag_grants AS g
                 JOIN pg_roles AS r ON r.rolname = g.role
                WHERE g.tag = check_tag_grant.tag
                  AND pg_has_role(check_tag_grant.role, r.oid, 'MEMBER')) THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'role "%" may not use tag "%"', check_tag_grant.role, check_tag_grant.tag
          USING ERRCODE = 'insufficient_privilege',
                DETAIL = 'The tag is granted to other roles in tag_grants.',
                HINT = 'Use another tag, or ask a pginfer_admin to INSERT INTO tag_grants (tag, role).';
END
$$;

COMMENT ON FUNCTION check_tag_grant(name, text) IS
    'Raises 42501 unless the role may use the tag (see tag_grants)';

REVOKE ALL ON FUNCTION check_tag_grant(name, text) FROM PUBLIC;
