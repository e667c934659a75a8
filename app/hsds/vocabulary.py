"""The taxonomies of the Bruso HSDS profile and their terms.

Seven taxonomies, each term being a row of a lookup or reference table:

==================  ==========================================  ====================================
taxonomy            terms                                       parent_id
==================  ==========================================  ====================================
sector              the 21 sectors                              —
category            the categories                              the rubric above it in the first
                                                                sector (by sector order) that places
                                                                it (the thematic tree; inferred
                                                                until a category-tree.json exists)
accreditation       the authorities, then the accreditations    an accreditation's authority
offer_type          the offer types                             —
commune             the 19 communes (NIS code)                  —
quartier            the monitoring quartiers                    —
statistical_sector  the Statbel statistical sectors             —
==================  ==========================================  ====================================

Every term kind is also a search criterion (``app.search.criteria.Criteria``) of the same name:
``taxonomy_term_id`` and ``taxonomy_id`` become those criteria, so HSDS filters mean exactly what the
v1 parameters mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from . import data, ids

# taxonomy kind → (names, descriptions, v1 list path)
TAXONOMIES: dict[str, dict] = {
    "sector": {
        "name": {"nl": "Sectoren van de sociale kaart", "fr": "Secteurs de la carte sociale"},
        "description": {
            "nl": "De sectoren van de Brusselse sociale kaart (social.brussels): de bovenste laag van de thematische boom.",
            "fr": "Les secteurs de la carte sociale bruxelloise (social.brussels) : le niveau supérieur de l'arbre thématique.",
        },
        "path": "/v1/sectors",
        "kinds": ("sector",),
    },
    "category": {
        "name": {"nl": "Categorieën van de sociale kaart", "fr": "Catégories de la carte sociale"},
        "description": {
            "nl": "De categorieën (activiteiten) van de sociale kaart. parent_id volgt de thematische boom (sector → rubriek → "
                  "categorie) van de eerste sector die de categorie plaatst; die boom is door Bruso afgeleid zolang de bron "
                  "hem niet levert.",
            "fr": "Les catégories (activités) de la carte sociale. parent_id suit l'arbre thématique (secteur → rubrique → "
                  "catégorie) du premier secteur qui place la catégorie ; cet arbre est déduit par Bruso tant que la source "
                  "ne le fournit pas.",
        },
        "path": "/v1/categories",
        "kinds": ("category",),
    },
    "accreditation": {
        "name": {"nl": "Erkenningen en erkennende overheden", "fr": "Agréments et pouvoirs d'agrément"},
        "description": {
            "nl": "De erkennende overheden (bovenste termen) en de erkenningen die ze verlenen (hun kinderen).",
            "fr": "Les pouvoirs d'agrément (termes supérieurs) et les agréments qu'ils délivrent (leurs enfants).",
        },
        "path": "/v1/accreditations",
        "kinds": ("authority", "accreditation"),
    },
    "offer_type": {
        "name": {"nl": "Aanbodtypes", "fr": "Types d'offre"},
        "description": {
            "nl": "Hoe de dienst wordt aangeboden (ter plaatse, aan huis, telefonisch, …).",
            "fr": "Comment le service est offert (sur place, à domicile, par téléphone, …).",
        },
        "path": "/v1/offer-types",
        "kinds": ("offer_type",),
    },
    "commune": {
        "name": {"nl": "Brusselse gemeenten", "fr": "Communes bruxelloises"},
        "description": {
            "nl": "De 19 gemeenten van het Brussels Hoofdstedelijk Gewest (NIS-code); kenmerk van de locatie.",
            "fr": "Les 19 communes de la Région de Bruxelles-Capitale (code INS) ; attribut du lieu.",
        },
        "path": "/v1/communes",
        "kinds": ("commune",),
    },
    "quartier": {
        "name": {"nl": "Wijken van de Wijkmonitoring", "fr": "Quartiers du Monitoring des quartiers"},
        "description": {
            "nl": "De wijken van de Brusselse Wijkmonitoring; kenmerk van de locatie.",
            "fr": "Les quartiers du Monitoring des quartiers bruxellois ; attribut du lieu.",
        },
        "path": "/v1/quartiers",
        "kinds": ("quartier",),
    },
    "statistical_sector": {
        "name": {"nl": "Statistische sectoren", "fr": "Secteurs statistiques"},
        "description": {
            "nl": "De statistische sectoren van Statbel in het Brussels Hoofdstedelijk Gewest; kenmerk van de locatie.",
            "fr": "Les secteurs statistiques de Statbel dans la Région de Bruxelles-Capitale ; attribut du lieu.",
        },
        "path": "/v1/statistical-sectors",
        "kinds": ("statistical_sector",),
    },
}
TERM_TAXONOMY = {kind: taxonomy for taxonomy, spec in TAXONOMIES.items() for kind in spec["kinds"]}
TERM_KINDS = tuple(TERM_TAXONOMY)  # display order of the terms
# The kind whose terms stand for "any term of the taxonomy" (taxonomy_id): authorities are covered
# by their accreditations.
TAXONOMY_FILTER_KIND = {taxonomy: spec["kinds"][-1] for taxonomy, spec in TAXONOMIES.items()}

# In-language descriptions for terms whose source has none in either language ({code}, {parent}).
GENERIC_DESCRIPTION = {
    "sector": {"nl": "Sector van de Brusselse sociale kaart", "fr": "Secteur de la carte sociale bruxelloise"},
    "category": {"nl": "Categorie van de Brusselse sociale kaart", "fr": "Catégorie de la carte sociale bruxelloise"},
    "authority": {"nl": "Erkennende overheid", "fr": "Pouvoir d'agrément"},
    "accreditation": {"nl": "Erkenning", "fr": "Agrément"},
    "accreditation_under": {"nl": "Erkenning door: {parent}", "fr": "Agrément délivré par : {parent}"},
    "offer_type": {"nl": "Aanbodtype", "fr": "Type d'offre"},
    "commune": {
        "nl": "Gemeente van het Brussels Hoofdstedelijk Gewest (NIS-code {code})",
        "fr": "Commune de la Région de Bruxelles-Capitale (code INS {code})",
    },
    "quartier": {"nl": "Wijk van de Brusselse Wijkmonitoring (code {code})", "fr": "Quartier du Monitoring des quartiers bruxellois (code {code})"},
    "statistical_sector": {"nl": "Statistische sector van Statbel ({code})", "fr": "Secteur statistique de Statbel ({code})"},
}


@dataclass
class Term:
    kind: str
    code: str
    name_nl: str | None
    name_fr: str | None
    description_nl: str | None
    description_fr: str | None
    parent: tuple[str, str] | None
    position: int
    url: str | None
    id: str = field(init=False)

    def __post_init__(self) -> None:
        self.id = ids.term_id(self.kind, self.code)

    @property
    def taxonomy(self) -> str:
        return TERM_TAXONOMY[self.kind]


class Vocabulary:
    """Every term of every taxonomy, by id and by (kind, code), in display order."""

    def __init__(self, rows: list[dict]):
        order = {kind: i for i, kind in enumerate(TERM_KINDS)}
        terms = [
            Term(
                kind=r["kind"], code=r["code"], name_nl=r["name_nl"], name_fr=r["name_fr"],
                description_nl=r["description_nl"], description_fr=r["description_fr"],
                parent=(r["parent_kind"], r["parent_code"]) if r["parent_kind"] else None,
                position=r["position"] or 0, url=r["url"],
            )
            for r in rows
        ]
        terms.sort(key=lambda t: (order[t.kind], t.position, t.code.zfill(12)))
        self.terms = terms
        self.by_id = {t.id: t for t in terms}
        self.by_key = {(t.kind, t.code): t for t in terms}
        for term in terms:  # a parent must exist, and parent chains must end (no cycles)
            if term.parent and term.parent not in self.by_key:
                term.parent = None
        for term in terms:
            seen, cursor = {(term.kind, term.code)}, term.parent
            while cursor is not None:
                if cursor in seen:
                    term.parent = None
                    break
                seen.add(cursor)
                cursor = self.by_key[cursor].parent

    @classmethod
    async def load(cls, conn: AsyncConnection) -> Vocabulary:
        return cls(await data.vocabulary_rows(conn))

    def term(self, kind: str, code) -> Term | None:
        return self.by_key.get((kind, str(code)))

    def parent_of(self, term: Term) -> Term | None:
        return self.by_key.get(term.parent) if term.parent else None

    def of_taxonomy(self, taxonomy: str) -> list[Term]:
        return [t for t in self.terms if t.taxonomy == taxonomy]

    def has_children(self) -> set[str]:
        return {self.by_key[t.parent].id for t in self.terms if t.parent}


TAXONOMY_IDS = {ids.taxonomy_id(kind): kind for kind in TAXONOMIES}
