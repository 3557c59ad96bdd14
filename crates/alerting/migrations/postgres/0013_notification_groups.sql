-- Grouping: a row a route groups carries its group (`group_key`: the route and the values of its `group_by`
-- labels) and is due once the group has waited `group_wait`. A dispatcher takes a due group's rows together and
-- sends them as one message; the group's next message waits until `group_interval` after its last (the newest
-- `sent_at` of the group). Rows of no group (acknowledgements, assignments, routes that do not group) are NULL.
ALTER TABLE notifications ADD COLUMN group_key TEXT;
CREATE INDEX idx_notifications_group_pending ON notifications (receiver, group_key, next_attempt_at)
    WHERE status = 'pending' AND group_key IS NOT NULL;
CREATE INDEX idx_notifications_group_sent ON notifications (receiver, group_key, sent_at)
    WHERE status = 'sent' AND group_key IS NOT NULL;
-- The rows one Slack message was sent for: a group's first message is edited from its alerts' current states.
CREATE INDEX idx_notifications_message ON notifications (receiver, slack_ts) WHERE slack_ts IS NOT NULL;
