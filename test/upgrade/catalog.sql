-- catalog.sql — what the installed pg_infer consists of, one sorted line per
-- fact, for comparing two databases (test/upgrade_test.sh): an upgraded one
-- and a fresh one must print the same lines.  Covers the extension's member
-- objects and what hangs off them: functions (signature, body, settings,
-- privileges), relations (kind, privileges, row security, comments),
-- columns in order, constraints, indexes, view definitions, policies,
-- triggers, types, the pg_dump marks, and the roles the extension creates.
-- Object names only (no OIDs), so two databases compare.
\pset format unaligned
\pset tuples_only on
WITH ext AS (
    SELECT oid, extnamespace FROM pg_extension WHERE extname = 'pg_infer'
), members AS (
    SELECT d.classid, d.objid
      FROM pg_depend AS d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), rels AS (
    SELECT c.* FROM pg_class AS c JOIN members AS m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
), types AS (
    SELECT t.* FROM pg_type AS t JOIN members AS m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
)
SELECT line FROM (
    SELECT format('extension %s schema %s config %s conditions %s', e.extversion, n.nspname,
                  (SELECT array_agg(c::regclass::text ORDER BY c::regclass::text) FROM unnest(e.extconfig) AS c),
                  e.extcondition) AS line
      FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_infer'
    UNION ALL
    SELECT format('function %s(%s) returns %s lang=%s volatile=%s parallel=%s strict=%s secdef=%s config=%s acl=%s body=%s comment=%s',
                  p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid),
                  l.lanname, p.provolatile, p.proparallel, p.proisstrict, p.prosecdef, p.proconfig,
                  p.proacl, md5(coalesce(p.prosrc, '') || coalesce(p.probin, '')),
                  md5(coalesce(obj_description(p.oid, 'pg_proc'), '')))
      FROM pg_proc AS p
      JOIN members AS m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
      JOIN pg_language AS l ON l.oid = p.prolang
    UNION ALL
    SELECT format('function %s default args %s', p.proname, pg_get_expr(p.proargdefaults, 0))
      FROM pg_proc AS p JOIN members AS m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
     WHERE p.proargdefaults IS NOT NULL
    UNION ALL
    SELECT format('relation %s kind=%s acl=%s rls=%s/%s options=%s partitioned_by=%s comment=%s',
                  c.relname, c.relkind, c.relacl, c.relrowsecurity, c.relforcerowsecurity, c.reloptions,
                  pg_get_partkeydef(c.oid), md5(coalesce(obj_description(c.oid, 'pg_class'), '')))
      FROM rels AS c
    UNION ALL
    SELECT format('partition %s of %s %s', c.relname, p.relname, pg_get_expr(c.relpartbound, c.oid))
      FROM rels AS c JOIN pg_inherits AS i ON i.inhrelid = c.oid JOIN pg_class AS p ON p.oid = i.inhparent
    UNION ALL
    SELECT format('column %s.%s #%s %s notnull=%s default=%s acl=%s comment=%s', c.relname, a.attname,
                  row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
                  format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(ad.adbin, ad.adrelid), a.attacl,
                  md5(coalesce(col_description(c.oid, a.attnum), '')))
      FROM pg_class AS c
      JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef AS ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
     WHERE c.oid IN (SELECT oid FROM rels) OR c.reltype IN (SELECT oid FROM types)
    UNION ALL
    SELECT format('constraint %s on %s: %s', k.conname, c.relname, pg_get_constraintdef(k.oid))
      FROM pg_constraint AS k JOIN rels AS c ON c.oid = k.conrelid
    UNION ALL
    SELECT format('index %s', pg_get_indexdef(i.indexrelid))
      FROM pg_index AS i JOIN rels AS c ON c.oid = i.indrelid
    UNION ALL
    SELECT format('view %s: %s', c.relname, md5(pg_get_viewdef(c.oid)))
      FROM rels AS c WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT format('policy %s on %s cmd=%s permissive=%s roles=%s using=%s check=%s', p.polname, c.relname,
                  p.polcmd, p.polpermissive,
                  (SELECT array_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END ORDER BY 1)
                     FROM unnest(p.polroles) AS r),
                  pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
      FROM pg_policy AS p JOIN rels AS c ON c.oid = p.polrelid
    UNION ALL
    SELECT format('trigger %s', pg_get_triggerdef(t.oid))
      FROM pg_trigger AS t JOIN rels AS c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal
    UNION ALL
    SELECT format('type %s type=%s acl=%s', t.typname, t.typtype, t.typacl) FROM types AS t
    UNION ALL
    SELECT format('role %s login=%s member of %s', r.rolname, r.rolcanlogin,
                  (SELECT array_agg(g.rolname ORDER BY g.rolname)
                     FROM pg_auth_members AS am JOIN pg_roles AS g ON g.oid = am.roleid
                    WHERE am.member = r.oid))
      FROM pg_roles AS r WHERE r.rolname LIKE 'pginfer\_%'
) AS facts
ORDER BY line;
