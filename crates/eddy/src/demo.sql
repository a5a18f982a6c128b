-- The demo `eddy --demo` starts with: the three Nexmark streams (people,
-- auctions and bids of an online auction house) generated in-process at
-- 1000 events per second, and a few materialized views over them that stay
-- up to date as the events arrive. Connect with psql and SELECT from them.

CREATE SOURCE person WITH (connector = 'nexmark', nexmark.table.type = 'Person', nexmark.events.per.second = '1000');
CREATE SOURCE auction WITH (connector = 'nexmark', nexmark.table.type = 'Auction', nexmark.events.per.second = '1000');
CREATE SOURCE bid WITH (connector = 'nexmark', nexmark.table.type = 'Bid', nexmark.events.per.second = '1000');

-- The ten auctions with the most bids.
CREATE MATERIALIZED VIEW hot_auctions AS
SELECT auction, count(*) AS bids, max(price) AS top_price
FROM bid GROUP BY auction
ORDER BY bids DESC, auction LIMIT 10;

-- Bids and average bid price per auction category.
CREATE MATERIALIZED VIEW avg_price_by_category AS
SELECT a.category, count(*) AS bids, round(avg(b.price)) AS avg_price
FROM bid b JOIN auction a ON b.auction = a.id
GROUP BY a.category;

-- Bids per sales channel.
CREATE MATERIALIZED VIEW bids_by_channel AS
SELECT channel, count(*) AS bids, max(price) AS top_price
FROM bid GROUP BY channel;

-- Nexmark query 3: sellers in Oregon, Idaho or California with auctions in
-- category 10.
CREATE MATERIALIZED VIEW local_sellers AS
SELECT p.name, p.city, p.state, a.id AS auction
FROM auction a JOIN person p ON a.seller = p.id
WHERE a.category = 10 AND p.state IN ('OR', 'ID', 'CA');
