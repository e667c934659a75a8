-- What tipg serves in the benchmark: the published activity places with the columns the compared
-- Bruso scenarios filter on, in a schema of their own (TIPG_DB_SCHEMAS=["bench_tipg"]).
--
-- * geom stays in Lambert 72 (EPSG:31370), the stored column: tipg transforms bbox/CQL literals to
--   the column's SRID (so the GiST index ix_organisation_geom is used) and outputs
--   ST_Transform(geom, 4326) in GeoJSON, as Bruso does. Exposing a 4326 expression instead would
--   make every bbox query a sequential scan, which would measure the view, not tipg.
-- * sector_ids / category_ids are arrays (tipg's CQL2 A_CONTAINS compiles to `@>`).
-- * id is the legacy id: tipg's fallback key names pick it as the feature id (views have no primary key).
-- Re-runnable: the harness applies it to every benchmark database before starting tipg.
CREATE SCHEMA IF NOT EXISTS bench_tipg;
DROP VIEW IF EXISTS bench_tipg.organisations;
CREATE VIEW bench_tipg.organisations AS
SELECT o.id,
       o.name_official_nl AS name_nl,
       o.name_official_fr AS name_fr,
       o.commune_nis,
       o.commune_nl,
       o.commune_fr,
       ARRAY(SELECT oc.category_id FROM organisation_category oc
              WHERE oc.organisation_id = o.id ORDER BY oc.position) AS category_ids,
       ARRAY(SELECT DISTINCT ct.sector_id FROM organisation_category oc
               JOIN category_tree ct ON ct.category_id = oc.category_id
              WHERE oc.organisation_id = o.id ORDER BY 1) AS sector_ids,
       o.geom
  FROM organisation o
 WHERE o.publication_state = 'published';
