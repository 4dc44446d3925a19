-- Enum types of the VITAL design. Free-text legacy values are mapped onto these
-- labels by the synonym tables in rules/, never silently turned into NULL.
CREATE TYPE functional_area_type AS ENUM (
    'Commercial', 'Medical Affairs', 'Market Access', 'Clinical', 'Regulatory',
    'Research & Development', 'Manufacturing', 'Quality', 'Operations', 'IT/Digital',
    'Legal', 'Finance', 'HR', 'Business Development'
);
CREATE TYPE agent_status AS ENUM (
    'development', 'testing', 'active', 'maintenance', 'deprecated', 'archived'
);
CREATE TYPE validation_status AS ENUM (
    'validated', 'pending', 'in_review', 'expired', 'not_required'
);
CREATE TYPE data_classification AS ENUM (
    'public', 'internal', 'confidential', 'restricted'
);
CREATE TYPE job_category_type AS ENUM (
    'strategic', 'operational', 'tactical', 'analytical', 'creative',
    'collaborative', 'administrative', 'technical'
);
CREATE TYPE frequency_type AS ENUM (
    'daily', 'weekly', 'monthly', 'quarterly', 'annually', 'ad_hoc'
);
CREATE TYPE complexity_type AS ENUM (
    'low', 'medium', 'high', 'very_high'
);
CREATE TYPE jtbd_status AS ENUM (
    'draft', 'active', 'under_review', 'deprecated', 'archived'
);
CREATE TYPE tenant_status AS ENUM (
    'active', 'trial', 'suspended', 'inactive'
);
CREATE TYPE tenant_tier AS ENUM (
    'free', 'starter', 'professional', 'enterprise'
);
CREATE TYPE mapping_source_type AS ENUM (
    'manual', 'automated', 'ml_model', 'expert_review'
);
