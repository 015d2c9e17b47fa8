"""Creating and changing user accounts; the role rules they must follow."""

from sqlmodel import Session, func, select

from service import audit
from service.auth import hash_password
from service.errors import Conflict, Invalid
from service.i18n import N_
from service.users.models import STAFF_ROLES, Role, User, UserCreate, UserUpdate


def get_by_email(*, session: Session, email: str) -> User | None:
    """Returns a user by e-mail address."""
    return session.exec(select(User).where(User.email == email.strip().lower())).first()


def _check_roles(session: Session, roles: list[Role], organisation_id: int | None) -> None:
    from service.partners.models import Organisation

    if Role.partner in roles:
        if any(role in STAFF_ROLES for role in roles):
            raise Invalid(N_("A partner user cannot also hold a staff role."), field="roles")
        if organisation_id is None:
            raise Invalid(N_("A partner user must belong to an organisation."), field="organisation_id")
        if session.get(Organisation, organisation_id) is None:
            raise Invalid(N_("There is no organisation with this id."), field="organisation_id")
    elif organisation_id is not None:
        raise Invalid(N_("Only partner users belong to an organisation."), field="organisation_id")


def create(*, session: Session, actor: User | str | None, data: UserCreate) -> User:
    """Creates an account with a hashed password."""
    if get_by_email(session=session, email=data.email):
        raise Conflict(N_("A user with this e-mail already exists."), field="email")
    roles = list(dict.fromkeys(data.roles))
    _check_roles(session, roles, data.organisation_id)
    user = User(
        email=data.email,
        full_name=data.full_name,
        roles=roles,
        organisation_id=data.organisation_id,
        language=data.language,
        password_hash=hash_password(data.password),
    )
    session.add(user)
    audit.record(session, actor=actor, action="user.create", entity=user)
    session.commit()
    return user


def update(*, session: Session, actor: User, user: User, data: UserUpdate) -> User:
    """Changes the given fields of an account."""
    before = audit.snapshot(user)
    changes = data.model_dump(exclude_unset=True)
    if "password" in changes:
        password = changes.pop("password")
        if password is None:
            raise Invalid(N_("This field cannot be empty."), field="password")
        user.password_hash = hash_password(password)
    for field in ("full_name", "roles", "language", "is_active"):
        if field in changes and changes[field] is None:
            raise Invalid(N_("This field cannot be empty."), field=field)
    roles = list(dict.fromkeys(changes.get("roles", user.roles)))
    organisation_id = changes.get("organisation_id", user.organisation_id)
    _check_roles(session, roles, organisation_id)
    if user.id == actor.id and (Role.admin not in roles or changes.get("is_active") is False):
        raise Invalid(N_("You cannot remove your own administrator access."), field="roles")
    for field, value in changes.items():
        setattr(user, field, value)
    user.roles = roles
    session.add(user)
    audit.record(session, actor=actor, action="user.update", entity=user, before=before)
    session.commit()
    return user


def set_language(*, session: Session, user: User, language: str) -> None:
    """Remembers a user's language."""
    if user.language != language:
        before = audit.snapshot(user)
        user.language = language
        session.add(user)
        audit.record(session, actor=user, action="user.language", entity=user, before=before)
        session.commit()


def search(
    *, session: Session, organisation_id: int | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[User], int]:
    """A page of users, by e-mail, and how many there are."""
    query = select(User)
    count = select(func.count()).select_from(User)
    if organisation_id is not None:
        query = query.where(User.organisation_id == organisation_id)
        count = count.where(User.organisation_id == organisation_id)
    return list(session.exec(query.order_by(User.email).offset(offset).limit(limit))), session.exec(count).one()


def any_admin(*, session: Session) -> bool:
    """Whether an administrator account exists."""
    return any(user.has_role(Role.admin) for user in session.exec(select(User)))
