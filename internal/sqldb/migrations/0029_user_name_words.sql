-- The words of a person's name as blind indexes (HMAC under the tenant's
-- index key), so that the users list finds someone by a word of their name
-- with no name in clear. Kept in step with the name; erased with the account.
CREATE TABLE user_name_words (
    tenant_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    word_bidx BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, user_id, word_bidx)
);
CREATE INDEX user_name_words_by_word ON user_name_words (tenant_id, word_bidx);
