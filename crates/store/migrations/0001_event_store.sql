-- The event store of cqrs-es/postgres-es, plus the time each event was recorded.
CREATE TABLE IF NOT EXISTS events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    recorded_at    timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE TABLE IF NOT EXISTS snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- The transactional outbox: every committed event gets a row in the same transaction, and the
-- relay deletes it only after JetStream acknowledged the publish. A crash anywhere in between
-- leaves the row, so the event is published again (with the same Nats-Msg-Id) and never lost.
CREATE TABLE IF NOT EXISTS event_outbox
(
    id             bigserial PRIMARY KEY,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL
);

CREATE OR REPLACE FUNCTION event_outbox_enqueue() RETURNS trigger AS $$
BEGIN
    INSERT INTO event_outbox (aggregate_type, aggregate_id, sequence)
    VALUES (NEW.aggregate_type, NEW.aggregate_id, NEW.sequence);
    PERFORM pg_notify('event_outbox', '');
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS events_outbox ON events;
CREATE TRIGGER events_outbox AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION event_outbox_enqueue();
