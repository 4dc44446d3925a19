-- Junction tables instead of legacy arrays. Each is tenant-scoped; its foreign keys go to
-- (tenant_id, id), so both ends always belong to the row's tenant. mapping_source and
-- relevance_score say how a link was made (manual, automated rule, ml_model similarity).

-- Notion: a function's departments
CREATE TABLE function_departments (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    function_id     uuid NOT NULL,
    department_id   uuid NOT NULL,
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, function_id, department_id),
    FOREIGN KEY (tenant_id, function_id) REFERENCES org_functions (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, department_id) REFERENCES org_departments (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX function_departments_department_id_idx ON function_departments (department_id);

-- Notion: a role's functions
CREATE TABLE function_roles (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    function_id     uuid NOT NULL,
    role_id         uuid NOT NULL,
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, function_id, role_id),
    FOREIGN KEY (tenant_id, function_id) REFERENCES org_functions (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, role_id) REFERENCES org_roles (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX function_roles_role_id_idx ON function_roles (role_id);

-- Notion: a department's roles
CREATE TABLE department_roles (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    department_id   uuid NOT NULL,
    role_id         uuid NOT NULL,
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, department_id, role_id),
    FOREIGN KEY (tenant_id, department_id) REFERENCES org_departments (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, role_id) REFERENCES org_roles (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX department_roles_role_id_idx ON department_roles (role_id);

-- Notion: Mapped_to_Responsibilities / Roles links
CREATE TABLE role_responsibilities (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role_id         uuid NOT NULL,
    responsibility_id uuid NOT NULL,
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, role_id, responsibility_id),
    FOREIGN KEY (tenant_id, role_id) REFERENCES org_roles (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, responsibility_id) REFERENCES org_responsibilities (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX role_responsibilities_responsibility_id_idx ON role_responsibilities (responsibility_id);

-- legacy agents.capabilities text[]
CREATE TABLE agent_capabilities (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id        uuid NOT NULL,
    capability_id   uuid NOT NULL,
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id, capability_id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, capability_id) REFERENCES capabilities (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_capabilities_capability_id_idx ON agent_capabilities (capability_id);

-- legacy agents.knowledge_domains text[]
CREATE TABLE agent_knowledge_domains (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id        uuid NOT NULL,
    knowledge_domain_id uuid NOT NULL,
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id, knowledge_domain_id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, knowledge_domain_id) REFERENCES knowledge_domains (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_knowledge_domains_knowledge_domain_id_idx ON agent_knowledge_domains (knowledge_domain_id);

-- legacy agent tool configurations
CREATE TABLE agent_tools (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id        uuid NOT NULL,
    tool_id         uuid NOT NULL,
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id, tool_id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, tool_id) REFERENCES tools (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_tools_tool_id_idx ON agent_tools (tool_id);

-- legacy compatible_agents / incompatible_agents / prerequisite_agents uuid[]
CREATE TABLE agent_relations (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id        uuid NOT NULL,
    related_agent_id uuid NOT NULL,
    relation_type   text NOT NULL CHECK (relation_type IN ('compatible', 'incompatible', 'prerequisite')),
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id, related_agent_id, relation_type),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, related_agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_relations_related_agent_id_idx ON agent_relations (related_agent_id);

-- legacy capabilities depends_on / enables uuid[]
CREATE TABLE capability_dependencies (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    capability_id   uuid NOT NULL,
    related_capability_id uuid NOT NULL,
    dependency_type text NOT NULL CHECK (dependency_type IN ('depends_on', 'enables')),
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, capability_id, related_capability_id, dependency_type),
    FOREIGN KEY (tenant_id, capability_id) REFERENCES capabilities (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, related_capability_id) REFERENCES capabilities (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX capability_dependencies_related_capability_id_idx ON capability_dependencies (related_capability_id);

-- persona <-> job-to-be-done, by rule or by embedding similarity
CREATE TABLE jtbd_personas (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    jtbd_id         uuid NOT NULL,
    persona_id      uuid NOT NULL,
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, jtbd_id, persona_id),
    FOREIGN KEY (tenant_id, jtbd_id) REFERENCES jobs_to_be_done (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, persona_id) REFERENCES personas (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX jtbd_personas_persona_id_idx ON jtbd_personas (persona_id);

-- agent <-> job-to-be-done, by rule or by embedding similarity
CREATE TABLE agent_jtbds (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id        uuid NOT NULL,
    jtbd_id         uuid NOT NULL,
    mapping_source  mapping_source_type NOT NULL DEFAULT 'automated',
    relevance_score real CHECK (relevance_score BETWEEN 0 AND 1),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id, jtbd_id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, jtbd_id) REFERENCES jobs_to_be_done (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX agent_jtbds_jtbd_id_idx ON agent_jtbds (jtbd_id);
