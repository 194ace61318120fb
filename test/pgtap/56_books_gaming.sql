-- The books must not be gamed (issue 11, items 7-10), in one session: each
-- attack of the issue, reproduced, now refused.  Budgets count prompt tokens
-- + max_tokens; check_budget() answers a plain user about itself only; tags
-- with grants are bound to their roles and a role's own budget applies
-- whatever its tag; usage_maintain_partitions() cannot drop the books nor
-- flood usage with partitions.  Multi-session cases (reservations seen by
-- other sessions, failed commits, queue time) are in test/books_tests.sh.
-- Numbers are worked out by hand from the prompt's 202 tokens (+1 output).
-- spend left by an earlier run of this file on the same cluster (committed
-- before the test: the worker's own inserts must not wait for this session)
DELETE FROM usage_spend WHERE role::text LIKE 'gaming\_%';
BEGIN;
SELECT plan(38);

CREATE ROLE gaming_alice IN ROLE pginfer_user;
CREATE ROLE gaming_bob IN ROLE pginfer_user;
CREATE ROLE gaming_team;
CREATE ROLE gaming_carol IN ROLE pginfer_user, gaming_team;
CREATE ROLE gaming_ana IN ROLE pginfer_analyst;
CREATE ROLE gaming_adm IN ROLE pginfer_admin;

-- ---------------------------------------------------------------- item 7
-- 20 x 'Once upon a time there was a cat. ' is 202 tokens with BOS; with
-- max_tokens => 1 a request spends 203.
CREATE TEMP TABLE p AS SELECT repeat('Once upon a time there was a cat. ', 20) AS prompt;
GRANT SELECT ON p TO PUBLIC;
SELECT is(count_tokens((SELECT prompt FROM p)), 202, 'the prompt is 202 tokens');
INSERT INTO budgets (role, period, max_tokens) VALUES ('gaming_alice', 'day', 5000);

SET ROLE gaming_alice;
-- The attack: 1024 long prompts with max_tokens => 1 asked for 1024 tokens
-- (0.1.0) and spent 1024 x 203 = 207 872.
SELECT throws_ok($$SELECT count(*) FROM generate_batch(array_fill((SELECT prompt FROM p), ARRAY[1024]), max_tokens => 1)$$,
                 'PIB01', 'token budget of role "gaming_alice" exceeded',
                 '1024 long prompts with max_tokens => 1 are refused: 207,872 tokens > 5,000');
SELECT lives_ok($$SELECT generate((SELECT prompt FROM p), max_tokens => 1)$$, 'one prompt (203 tokens) is admitted');
RESET ROLE;
SELECT is((SELECT tokens FROM usage_spend WHERE role = 'gaming_alice'), 203::bigint,
          'it spent 202 prompt + 1 completion tokens');
SELECT is((SELECT row(role_tokens, tag_tokens, role_tag_tokens)::text
             FROM budget_reserved_tokens('gaming_alice', NULL)), '(0,0,0)',
          'its reservation was released when its row was committed');
SET ROLE gaming_alice;
-- 5000 - 203 = 4797 left: 23 x 203 = 4669 fit, 24 x 203 = 4872 do not.
SELECT throws_ok($$SELECT count(*) FROM generate_batch(array_fill((SELECT prompt FROM p), ARRAY[24]), max_tokens => 1)$$,
                 'PIB01', NULL, '24 prompts (4,872 tokens) do not fit in the 4,797 left');
SELECT is((SELECT count(*) FROM generate_batch(array_fill((SELECT prompt FROM p), ARRAY[23]), max_tokens => 1)),
          23::bigint, '23 prompts (4,669 tokens) are admitted');
SELECT throws_ok($$SELECT generate((SELECT prompt FROM p), max_tokens => 1)$$,
                 'PIB01', NULL, 'then 4,872 are spent and one more prompt (203) would overshoot 5,000');
SELECT throws_ok($$SELECT generate('Once', max_tokens => 200)$$, 'PIB01', NULL,
                 'max_tokens counts too: a 2-token prompt with max_tokens 200 needs 202 > 128 left');
SELECT lives_ok($$SELECT generate('Once', max_tokens => 100)$$,
                'a 2-token prompt with max_tokens 100 (102 <= 128 left) is admitted');
RESET ROLE;
SELECT cmp_ok((SELECT tokens FROM usage_spend WHERE role = 'gaming_alice'), '<=', 5000::bigint,
              'the budget was never overshot');

-- ---------------------------------------------------------------- item 8
INSERT INTO budgets (role, period, max_tokens) VALUES ('gaming_bob', 'day', 1000);
SET ROLE gaming_alice;
SELECT throws_ok($$SELECT check_budget('gaming_bob', NULL, 2000000000)$$, '42501',
                 'permission denied to check the budget of role "gaming_bob"',
                 'a plain user cannot ask about another role''s spend');
SELECT throws_ok($$SELECT check_budget(NULL, 'bob-tag', 1)$$, '42501', NULL,
                 'nor about no role (every role under a tag)');
SELECT lives_ok($$SELECT check_budget('gaming_alice', NULL, 1)$$, 'a plain user may ask about itself');
SELECT throws_ok($$SELECT check_budget('gaming_alice', NULL, 1000)$$, 'PIB01', NULL,
                 'and is told when it is over its budget');
SELECT throws_ok($$SELECT * FROM budget_reserved_tokens('gaming_bob', NULL)$$, '42501', NULL,
                 'a plain user cannot read the reservations');
RESET ROLE;
SET ROLE gaming_ana;
SELECT lives_ok($$SELECT check_budget('gaming_bob', NULL, 1000)$$, 'an analyst may ask about any role');
SELECT throws_ok($$SELECT check_budget('gaming_bob', NULL, 1001)$$, 'PIB01', NULL,
                 'and hears its answer (1001 > 1000)');
RESET ROLE;
SET ROLE gaming_adm;
SELECT lives_ok($$SELECT check_budget('gaming_bob', NULL, 1)$$, 'an admin may ask about any role');
RESET ROLE;

-- ---------------------------------------------------------------- item 9
INSERT INTO tag_grants (tag, role) VALUES ('bob-tag', 'gaming_bob'), ('team-tag', 'gaming_team');
INSERT INTO budgets (tag, period, max_tokens) VALUES ('bob-tag', 'day', 300);
SET ROLE gaming_alice;
SELECT throws_ok($$SELECT generate('Once', max_tokens => 1, tag => 'bob-tag')$$, '42501',
                 'role "gaming_alice" may not use tag "bob-tag"',
                 'another role cannot bill a tag granted to bob');
SET pg_infer.tag = 'bob-tag';
SELECT throws_ok($$SELECT generate('Once', max_tokens => 1)$$, '42501', NULL,
                 'nor through pg_infer.tag');
RESET pg_infer.tag;
SELECT throws_ok($$SELECT check_budget('gaming_alice', 'bob-tag', 1)$$, '42501', NULL,
                 'nor ask about that tag''s budget');
SELECT lives_ok($$SELECT generate('Once', max_tokens => 1, tag => 'free-tag')$$,
                'a tag without grants stays free-form');
SELECT throws_ok($$SELECT generate('Once', max_tokens => 1, tag => 'team-tag')$$, '42501', NULL,
                 'a tag granted to a group is refused to a non-member');
RESET ROLE;
SET ROLE gaming_carol;
SELECT lives_ok($$SELECT generate('Once', max_tokens => 1, tag => 'team-tag')$$,
                'and used by a member of the group');
RESET ROLE;
SET ROLE gaming_bob;
SELECT lives_ok($$SELECT generate('Once', max_tokens => 1, tag => 'bob-tag')$$, 'bob uses his tag');
-- bob's role budget (1000) applies whatever tag he uses: 2 + 999 > 1000 - 3
SELECT throws_ok($$SELECT generate('Once', max_tokens => 999, tag => 'escape-tag')$$, 'PIB01',
                 'token budget of role "gaming_bob" exceeded',
                 'bob cannot escape his own budget with another tag');
SELECT throws_ok($$SELECT generate('Once', max_tokens => 999)$$, 'PIB01', NULL,
                 'nor with no tag');
-- the tag's budget (300) binds bob too under that tag: 3 spent + 2 + 296 > 300
SELECT throws_ok($$SELECT generate('Once', max_tokens => 296, tag => 'bob-tag')$$, 'PIB01',
                 'token budget of tag "bob-tag" exceeded', 'the tag''s own budget holds');
RESET ROLE;

-- ---------------------------------------------------------------- item 10
SET ROLE gaming_adm;
SELECT throws_ok($$SELECT * FROM usage_maintain_partitions(retention => '1 second')$$, '22023', NULL,
                 'an admin cannot drop every partition with a retention of 1 second');
SELECT throws_ok($$SELECT * FROM usage_maintain_partitions(days_ahead => 1500)$$, '22023',
                 'days_ahead must be at most 366', 'nor make 1500 partitions ahead');
SELECT throws_ok($$SELECT * FROM usage_maintain_partitions(retention => '2 days')$$, '42501', NULL,
                 'dropping history beyond pg_infer.usage_retention needs confirm_drop');
SELECT lives_ok($$SELECT * FROM usage_maintain_partitions(retention => '2 days', confirm_drop => true)$$,
                'with confirm_drop => true an admin may');
SELECT throws_ok($$SELECT * FROM usage_maintain_partitions(reference_time => now() + interval '10 years')$$,
                 '42501', NULL, 'an admin cannot move the reference time to drop today''s rows');
SELECT lives_ok($$SELECT * FROM usage_maintain_partitions()$$,
                'the periodic maintenance (no argument) still works for an admin');
RESET ROLE;
SELECT throws_ok($$SELECT * FROM usage_maintain_partitions(retention => '1 hour')$$, '22023', NULL,
                 'a superuser cannot go below the 1-day floor either');
SELECT throws_ok($$SELECT * FROM usage_maintain_partitions(retention => '1 day', reference_time => now() + interval '1 day')$$,
                 '22023', NULL, 'nor drop the last day through reference_time');
SELECT is((SELECT count(*) FROM usage_maintain_partitions(days_ahead => 366, retention => '0')
            WHERE action = 'created'),
          (SELECT 367 - count(*) FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'usage'::regclass
              AND c.relname >= 'usage_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')
              AND c.relname <= 'usage_p' || to_char((now() AT TIME ZONE 'UTC') + interval '366 days', 'YYYYMMDD')),
          'days_ahead 366 is allowed (today and 366 days after)');

SELECT * FROM finish();
ROLLBACK;
